/**
 * Which nodes' disks are on this host (DR_NODES). Unset or empty: every configured node, the
 * single-host setup. "none": no node at all, a worker that serves only the control queue.
 * Otherwise a comma-separated list of node ids.
 */
import type { Config } from './config';

export const NO_NODES = 'none';

/** DR_NODES as a list; undefined means every configured node. */
export function parseLocalNodes(value: string | undefined): string[] | undefined {
  const text = value?.trim();
  if (!text) return undefined;
  if (text === NO_NODES) return [];
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** The local nodes, checked against the config; an unknown id is refused, naming the configured ones. */
export function resolveLocalNodes(config: Config, requested: readonly string[] | undefined): string[] {
  const all = config.databases.flatMap((db) => db.nodes.map((n) => n.id));
  if (requested === undefined) return all;
  for (const id of requested) {
    if (id === NO_NODES)
      throw new Error(`DR_NODES: "${NO_NODES}" stands alone (no node is local); it cannot be listed with others`);
    if (!all.includes(id)) {
      throw new Error(
        `DR_NODES names "${id}", which is not a configured node (${all.join(', ')}); use "${NO_NODES}" for no node`,
      );
    }
  }
  return [...requested];
}
