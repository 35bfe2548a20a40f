/**
 * A drill's steady-state check (pure): a drill injects a fault only into a cluster that is whole,
 * and heals until this check passes again. Steady: the recorded primary answers as primary of the
 * recorded epoch with its file ok; every other node answers as an in-sync replica of it; the sync
 * record of that epoch names a standby, with no degraded mode and no move of the role under way
 * (and, with zones, the standby in another zone than the primary); no topology change holds the
 * lease (a failover, switchover, restore or another drill; the drill's own lease aside); and the primary is the expected one
 * when the drill names it (the posture it heals back to). Each problem is a sentence for the
 * report.
 */
import type { ClusterStatus } from '../activities/cluster';
import { describeLease, isLive } from '../config-center/lease';

export type SteadyState =
  { steady: true; primary: string; epoch: number; standbys: string[] } | { steady: false; problems: string[] };

export function steadyState(
  status: ClusterStatus,
  now: number,
  expect: { primary?: string; leaseHolder?: string } = {},
): SteadyState {
  const problems: string[] = [];
  const record = status.primary;
  if (isLive(status.lease, now) && status.lease.holder !== expect.leaseHolder) {
    problems.push(`a topology change runs: ${describeLease(status.lease)}`);
  }
  if (!record) return { steady: false, problems: [...problems, `no primary is recorded for ${status.cluster}`] };
  if (expect.primary && record.node !== expect.primary) {
    problems.push(`the primary is ${record.node}, not ${expect.primary} as expected`);
  }
  const p = status.nodes.find((n) => n.id === record.node);
  if (!p?.reachable) problems.push(`the primary ${record.node} does not answer${p?.error ? ` (${p.error})` : ''}`);
  else if (p.role !== 'primary' || p.epoch !== record.epoch) {
    problems.push(
      `${record.node} answers as ${p.role} of epoch ${p.epoch}, not primary of the recorded epoch ${record.epoch}`,
    );
  } else if (p.status !== 'ok') problems.push(`the primary ${record.node} is ${p.status}`);
  for (const n of status.nodes.filter((v) => v.id !== record.node)) {
    if (!n.reachable) problems.push(`${n.id} does not answer${n.error ? ` (${n.error})` : ''}`);
    else if (n.role !== 'replica') problems.push(`${n.id} is ${n.role}, not a replica`);
    else if (n.status !== 'ok') problems.push(`${n.id} is ${n.status}`);
    const link = p?.replicas?.find((r) => r.id === n.id);
    if (p?.reachable && link?.state !== 'in-sync') {
      problems.push(`${n.id} is not in sync with the primary (${link ? link.state : 'not one of its replicas'})`);
    }
  }
  const sync = status.sync;
  if (!sync || sync.epoch !== record.epoch) {
    problems.push(`no sync record of epoch ${record.epoch} (the monitor writes it once a standby is in sync)`);
  } else {
    if (sync.degraded) problems.push(`the primary acknowledges without a synchronous standby since ${sync.since}`);
    if (sync.switching)
      problems.push(
        `the synchronous role is moving from ${sync.switching.from.join(', ') || 'none'} to ${sync.switching.to.join(', ')}`,
      );
    if (sync.standbys.length === 0 && !sync.degraded)
      problems.push('no standby is proven to hold every acknowledged write');
    if (sync.placement === 'same-zone')
      problems.push(`the standby ${sync.standbys.join(', ')} is in the primary's zone (the fallback)`);
  }
  return problems.length > 0
    ? { steady: false, problems }
    : { steady: true, primary: record.node, epoch: record.epoch, standbys: sync!.standbys };
}
