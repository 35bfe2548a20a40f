/** Finding the node that currently takes writes for a database. */
import type { Config, DatabaseConfig, NodeConfig } from './config';
import { InputProblem, Unavailable } from './errors';
import { NodeClient, type NodeHealth } from './node-client';

/** The cluster (database) named, or by default the first with several nodes; unknown: InputProblem on `cluster`. */
export function clusterOfConfig(config: Pick<Config, 'databases'>, name?: string): DatabaseConfig {
  const multi = config.databases.filter((d) => d.nodes.length > 1);
  const db = name ? config.databases.find((d) => d.name === name) : (multi[0] ?? config.databases[0]);
  if (!db) {
    const known = config.databases.map((d) => d.name).join(', ');
    throw new InputProblem('cluster', `unknown cluster "${name}"; the clusters are: ${known}`);
  }
  return db;
}

/** A configured node of the cluster; unknown: InputProblem on `field`, listing the nodes. */
export function nodeOf(db: DatabaseConfig, id: string, field = 'node'): NodeConfig {
  const node = db.nodes.find((n) => n.id === id);
  if (!node) {
    throw new InputProblem(
      field,
      `unknown node "${id}" in cluster ${db.name}; its nodes are: ${db.nodes.map((n) => n.id).join(', ')}`,
    );
  }
  return node;
}

/**
 * The node reporting itself primary with the highest epoch (a single-node database: that node).
 * Unreachable nodes are skipped; when none answers as primary the error lists what each said, for the retry message.
 * `orFenced` (the log archiver): with no primary, the fenced node of the newest epoch that knows the
 * most acknowledged.
 */
export async function findPrimary(
  db: DatabaseConfig,
  options: { orFenced?: boolean } = {},
): Promise<{ node: NodeConfig; health: NodeHealth }> {
  const problems: string[] = [];
  const answers = await Promise.all(
    db.nodes.map(async (node) => {
      try {
        // GET /health is open: no credential goes out where none is needed.
        return { node, health: await new NodeClient(node.id, node.url, undefined, 5_000).health() };
      } catch (err) {
        problems.push((err as Error).message);
        return undefined;
      }
    }),
  );
  // A returning old primary may still call itself primary until it is fenced: the newest epoch wins.
  const primaries = answers
    .filter((a) => a !== undefined)
    .filter((a) => a.health.role === 'primary' || db.nodes.length === 1)
    .sort((a, b) => b.health.epoch - a.health.epoch);
  if (primaries[0]) return primaries[0];
  // While a restore holds every node fenced, what was acknowledged last is still on the node that
  // was primary: it serves its acknowledged events. Only when every node answered, so the newest
  // epoch is known and a stale node of an abandoned history cannot be taken for it.
  const reached = answers.filter((a) => a !== undefined);
  if (options.orFenced && reached.length === db.nodes.length) {
    const newest = Math.max(...reached.map((a) => a.health.epoch));
    const fenced = reached
      .filter((a) => a.health.role === 'fenced' && a.health.epoch === newest)
      .sort((a, b) => (b.health.ackedLsn ?? 0) - (a.health.ackedLsn ?? 0));
    if (fenced[0]) return fenced[0];
  }
  for (const a of answers) if (a) problems.push(`node ${a.node.id} is ${a.health.role}`);
  throw new Unavailable(`waiting for a primary of database "${db.name}": ${problems.join('; ')}`);
}
