/** Finding the node that currently takes writes for a database. */
import type { DatabaseConfig, NodeConfig } from './config';
import { Unavailable } from './errors';
import { NodeClient, type NodeHealth } from './node-client';

/**
 * The node reporting itself primary (a single-node database: that node). Unreachable nodes are
 * skipped; when none answers as primary the error lists what each said, for the retry message.
 */
export async function findPrimary(db: DatabaseConfig): Promise<{ node: NodeConfig; health: NodeHealth }> {
  const problems: string[] = [];
  for (const node of db.nodes) {
    try {
      const health = await new NodeClient(node.id, node.url, 5_000).health();
      if (health.role === 'primary' || db.nodes.length === 1) return { node, health };
      problems.push(`node ${node.id} is ${health.role}`);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  throw new Unavailable(`waiting for a primary of database "${db.name}": ${problems.join('; ')}`);
}
