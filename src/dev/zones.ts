/**
 * The steady state of a cluster across zones, as the zone tests and bench:zones wait for it (pure):
 * the recorded primary answers as primary of the recorded epoch, every other node is an in-sync
 * replica of it, and the sync record of that epoch names one standby, in another zone, with no
 * degraded mode and no move of the role under way.
 */
import type { SyncRecord } from '../activities/cluster';
import type { PrimaryRecord } from '../config-center';

export interface SteadyAcrossZones {
  primary: string;
  epoch: number;
  standby: string;
}

export function steadyZones(
  record: PrimaryRecord | undefined,
  primary: { role?: string; epoch?: number; replicas?: Array<{ id: string; state: string }> } | undefined,
  sync: SyncRecord | undefined,
  nodeIds: readonly string[],
): SteadyAcrossZones | undefined {
  if (!record || !primary) return undefined;
  const linksInSync = nodeIds
    .filter((id) => id !== record.node)
    .every((id) => primary.replicas?.some((r) => r.id === id && r.state === 'in-sync'));
  const ok =
    primary.role === 'primary' &&
    primary.epoch === record.epoch &&
    linksInSync &&
    sync?.epoch === record.epoch &&
    !sync.degraded &&
    !sync.switching &&
    sync.placement === 'other-zone' &&
    sync.standbys.length === 1;
  return ok ? { primary: record.node, epoch: record.epoch, standby: sync.standbys[0]! } : undefined;
}
