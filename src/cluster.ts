/** Finding the node that currently takes writes for a database. */
import type { DatabaseConfig, NodeConfig } from './config';
import { Unavailable } from './errors';
import { NodeClient, type NodeHealth } from './node-client';

/**
 * The node reporting itself primary with the highest epoch (a single-node database: that node).
 * Unreachable nodes are skipped; when none answers as primary the error lists what each said, for the retry message.
 */
export async function findPrimary(db: DatabaseConfig): Promise<{ node: NodeConfig; health: NodeHealth }> {
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
  for (const a of answers) if (a) problems.push(`node ${a.node.id} is ${a.health.role}`);
  throw new Unavailable(`waiting for a primary of database "${db.name}": ${problems.join('; ')}`);
}
