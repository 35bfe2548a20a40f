/**
 * Where the synchronous standby goes (pure; unit-tested). With zones, the standby is chosen in
 * another zone than the primary's whenever one is in sync, so losing the primary's whole zone
 * loses no acknowledged write; when no node of another zone can be, a node of the primary's own
 * zone is taken (and recorded as such) before the cluster degrades to acknowledging alone.
 *
 * The choice is the monitor's (it sees which replicas are in sync): promote and rejoin only add
 * replicas without moving the synchronous role off an in-sync standby, and the monitor moves it
 * in the order that keeps the sync record true (docs/architecture.md, "Zones").
 */
export type SyncPlacement = 'prefer-other-zone' | 'require-other-zone' | 'any';

export interface PlacedNode {
  id: string;
  url: string;
  zone?: string;
  region?: string;
}

export interface ReplicaSpec {
  id: string;
  url: string;
  mode: 'sync' | 'async';
}

/** other-zone: a standby outside the primary's zone; same-zone: the fallback; undefined: no zones. */
export type StandbyPlacement = 'other-zone' | 'same-zone';

function otherZone(primary: PlacedNode | undefined, node: PlacedNode): boolean {
  return primary?.zone === undefined || node.zone === undefined || node.zone !== primary.zone;
}

/**
 * Whether `node` is in the primary's region (nodes without a region are). A standby region's node
 * is never synchronous (every write would wait a round trip between regions) and never elected by
 * an automatic failover: moving the primary to another region is an operator's decision
 * (failoverRegion).
 */
export function sameRegion(primary: Pick<PlacedNode, 'region'> | undefined, node: Pick<PlacedNode, 'region'>): boolean {
  return primary?.region === undefined || node.region === undefined || node.region === primary.region;
}

/**
 * Why a worker of region `home` must not act on the cluster now (its recorded primary is a node
 * of another region: a region failover moved it), or undefined when it may (or regions are not
 * configured).
 */
export function regionElsewhere(
  home: string | undefined,
  cluster: { name: string; nodes: ReadonlyArray<{ id: string; region?: string }> },
  record: { node: string; epoch: number },
): string | undefined {
  const theirs = cluster.nodes.find((n) => n.id === record.node)?.region;
  if (home === undefined || theirs === undefined || theirs === home) return undefined;
  return `the primary of ${cluster.name} is ${record.node} in region ${theirs} (epoch ${record.epoch}); this worker runs in region ${home}`;
}

/**
 * Where the monitor's sentries run: one node per zone of this region (the first in config order),
 * whose host's worker polls that node's task queue. A sentry is the monitor's watch reduced to
 * failure detection: it probes and starts the failover, nothing else. With a sentry already
 * probing in every zone, losing the zone of the worker that runs the main watch (killed, or frozen
 * with its long polls still open) costs no rescheduling of the watch before the failure is seen.
 * None without zones, or with one zone in this region (the main watch is all there is to lose).
 */
export function sentryNodes(
  home: string | undefined,
  nodes: ReadonlyArray<Pick<PlacedNode, 'id' | 'zone' | 'region'>>,
): string[] {
  const here = nodes.filter((n) => home === undefined || n.region === undefined || n.region === home);
  const firstOfZone = new Map<string, string>();
  for (const n of here) if (n.zone !== undefined && !firstOfZone.has(n.zone)) firstOfZone.set(n.zone, n.id);
  return firstOfZone.size >= 2 ? [...firstOfZone.values()] : [];
}

/**
 * The primary's replicas, the first `count` of them synchronous: nodes in `eligible` (healthy, or
 * in sync) before the others; within each, nodes of another zone before the primary's own zone,
 * unless the placement ignores zones; config order breaks ties. With "require-other-zone" a node
 * of the primary's zone is never synchronous.
 */
export function replicaSpecs(
  nodes: readonly PlacedNode[],
  primaryId: string,
  eligible: ReadonlySet<string>,
  count: number,
  placement: SyncPlacement = 'prefer-other-zone',
): ReplicaSpec[] {
  const primary = nodes.find((n) => n.id === primaryId);
  const others = nodes.filter((n) => n.id !== primaryId);
  const rank = (n: PlacedNode) =>
    (sameRegion(primary, n) ? 0 : 4) +
    (eligible.has(n.id) ? 0 : 2) +
    (placement === 'any' || otherZone(primary, n) ? 0 : 1);
  const ordered = others
    .map((n, i) => ({ n, i }))
    .sort((a, b) => rank(a.n) - rank(b.n) || a.i - b.i)
    .map(({ n }) => n);
  let syncLeft = count;
  const specs = ordered.map((n) => {
    const allowed = sameRegion(primary, n) && (placement !== 'require-other-zone' || otherZone(primary, n));
    const mode: 'sync' | 'async' = allowed && syncLeft > 0 ? 'sync' : 'async';
    if (mode === 'sync') syncLeft--;
    return { id: n.id, url: n.url, mode };
  });
  // In config order: the order the primary lists its replicas does not depend on health.
  return others.map((n) => specs.find((s) => s.id === n.id)!);
}

/**
 * The replicas after a node (re)joins: every replica keeps the mode the primary gives it now, so
 * joining never takes the synchronous role from an in-sync standby (nor hands it to a node that is
 * still catching up); a node the primary does not list yet joins as asynchronous. When the primary
 * has no synchronous replica at all, the choice starts over (replicaSpecs with `healthy`).
 */
export function joinSpecs(
  nodes: readonly PlacedNode[],
  primaryId: string,
  current: ReadonlyArray<{ id: string; mode: string }>,
  healthy: ReadonlySet<string>,
  count: number,
  placement: SyncPlacement = 'prefer-other-zone',
): ReplicaSpec[] {
  if (count > 0 && !current.some((r) => r.mode === 'sync')) {
    return replicaSpecs(nodes, primaryId, healthy, count, placement);
  }
  return nodes
    .filter((n) => n.id !== primaryId)
    .map((n) => ({
      id: n.id,
      url: n.url,
      mode: current.find((r) => r.id === n.id)?.mode === 'sync' ? 'sync' : 'async',
    }));
}

/** Where the standbys are relative to the primary; undefined when the nodes have no zones. */
export function placementOf(
  nodes: readonly PlacedNode[],
  primaryId: string,
  standbys: readonly string[],
): StandbyPlacement | undefined {
  const primary = nodes.find((n) => n.id === primaryId);
  const placed = standbys.map((id) => nodes.find((n) => n.id === id)).filter((n) => n !== undefined);
  if (primary?.zone === undefined || placed.length === 0 || placed.some((n) => n.zone === undefined)) return undefined;
  return placed.some((n) => n.zone !== primary.zone) ? 'other-zone' : 'same-zone';
}

/** The zone of each standby, for the sync record. */
export function zonesOf(nodes: readonly PlacedNode[], ids: readonly string[]): Record<string, string> | undefined {
  const zones = Object.fromEntries(
    ids.flatMap((id) => {
      const zone = nodes.find((n) => n.id === id)?.zone;
      return zone === undefined ? [] : [[id, zone]];
    }),
  );
  return Object.keys(zones).length > 0 ? zones : undefined;
}

export interface StandbySwitch {
  /** The primary's replicas after the switch. */
  replicas: ReplicaSpec[];
  from: string[];
  to: string[];
  placement?: StandbyPlacement;
  why: string;
}

/**
 * Whether the monitor should move the synchronous role, judged on the primary's own view of its
 * replicas: only to replicas that are in sync now, and only when that is better than what the
 * primary has — a synchronous standby that is not in sync replaced by one that is (a zone fallback,
 * before any degraded mode), or an in-sync standby of the primary's zone replaced by an in-sync one
 * of another zone (back to normal once that zone returns).
 */
export function decideStandbySwitch(input: {
  nodes: readonly PlacedNode[];
  primaryId: string;
  replicas: ReadonlyArray<{ id: string; mode: string; state: string }>;
  count: number;
  placement: SyncPlacement;
}): StandbySwitch | undefined {
  const { nodes, primaryId, replicas, count, placement } = input;
  if (count === 0 || replicas.length === 0) return undefined;
  const inSync = new Set(replicas.filter((r) => r.state === 'in-sync').map((r) => r.id));
  const current = replicas.filter((r) => r.mode === 'sync').map((r) => r.id);
  const wanted = replicaSpecs(nodes, primaryId, inSync, count, placement);
  const next = wanted.filter((r) => r.mode === 'sync').map((r) => r.id);
  // Only in-sync replicas are moved to: a node catching up would hold writes back.
  if (!next.filter((id) => !current.includes(id)).every((id) => inSync.has(id))) return undefined;
  const primary = nodes.find((n) => n.id === primaryId);
  const score = (ids: string[]) => {
    const ready = ids.filter((id) => inSync.has(id));
    const away = ready.filter((id) => {
      const n = nodes.find((x) => x.id === id);
      return placement !== 'any' && n !== undefined && primary?.zone !== undefined && n.zone !== primary.zone;
    });
    return ready.length * 100 + away.length;
  };
  if (next.join() === current.join() || score(next) <= score(current)) return undefined;
  const placed = placementOf(nodes, primaryId, next);
  const why = !current.some((id) => inSync.has(id))
    ? `the synchronous standby ${current.join(', ') || '(none)'} is not in sync; ${next.join(', ')} is${placed === 'same-zone' ? " (in the primary's zone: no node of another zone is in sync)" : ''}`
    : `${next.join(', ')} is in sync in another zone than the primary's`;
  return { replicas: wanted, from: current, to: next, ...(placed ? { placement: placed } : {}), why };
}
