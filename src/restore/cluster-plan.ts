/**
 * How an in-place restore of a replicated database keeps every acknowledged write (docs/
 * architecture.md, rules 6 and 10). Pure: the workflow gathers the facts (each node's health, the
 * primary and sync records) and this decides, saying why.
 *
 * - Rebuild from a node that holds everything: when the restore asks for no point in the past, and
 *   a healthy node is shown to hold every acknowledged write (the primary, or a standby the sync
 *   record proves), the node to restore is rebuilt from it: RPO 0. If the node to restore is the
 *   primary, the cluster fails over to that standby first.
 * - Restore from backups and the archive: when no node can serve as the source. "Everything" then
 *   means everything acknowledged: the acknowledged head a reachable node proves, which the archive
 *   must reach (or the loss is accepted explicitly). When a node that may hold acknowledged writes
 *   cannot be asked, the restore is refused unless the loss is accepted; when every node is
 *   reachable and empty (their data is gone), there is nothing left to prove and the restore
 *   brings back what the archive holds.
 * - Going back in time (pointInTime, toLsn, backupId, excludeLsns) is always explicit: the restored
 *   node opens a new epoch, and every other node follows its history.
 */
import type { ParsedRestoreInput } from './input';

export interface ClusterNodeFacts {
  id: string;
  reachable: boolean;
  /** ok, maintenance, damaged, unwritable, empty (docs/node-api.md, /health). */
  status?: string;
  role?: string;
  epoch?: number;
  lsn?: number;
  /** The highest LSN the node knows to be acknowledged. */
  ackedLsn?: number;
}

export interface ClusterFacts {
  nodes: ClusterNodeFacts[];
  /** The primary record: who clients follow, at which epoch. */
  primary?: { node: string; epoch: number };
  /** The sync record: who holds every acknowledged write of its epoch. */
  sync?: { epoch: number; standbys: string[]; degraded: boolean };
}

export type ClusterRestoreDecision =
  | {
      kind: 'rebuild';
      /** The node whose file is replaced. */
      target: string;
      /** The node it is rebuilt from (the primary once the failover, if any, is done). */
      source: string;
      /** The target is the primary: fail over to the source first. */
      failoverFirst: boolean;
      why: string;
    }
  | {
      kind: 'restore';
      target: string;
      /** Everything acknowledged, as far as a node proves it (undefined: explicit target, or none left to prove). */
      requiredLsn?: number;
      /** The nodes other than the target, each rejoined or rebuilt from it afterwards. */
      others: string[];
      why: string;
    }
  | { kind: 'refuse'; field: 'node' | 'acceptLoss'; message: string };

/** True when the request names a point in the past (or batches to leave out): a rewind. */
export function isRewind(request: ParsedRestoreInput): boolean {
  return (
    request.pointInTime !== undefined ||
    request.toLsn !== undefined ||
    request.backupId !== undefined ||
    request.excludeLsns !== undefined
  );
}

const healthy = (n: ClusterNodeFacts | undefined): n is ClusterNodeFacts =>
  !!n && n.reachable && (n.status === undefined || n.status === 'ok');

export function decideClusterRestore(request: ParsedRestoreInput, facts: ClusterFacts): ClusterRestoreDecision {
  const ids = facts.nodes.map((n) => n.id);
  // Without a node named: the primary when its own file is lost, else a node whose file is
  // (damaged or empty: what an operator restores), else the primary.
  const lost = (n: ClusterNodeFacts | undefined) =>
    !!n && n.reachable && (n.status === 'damaged' || n.status === 'empty');
  const recorded = facts.nodes.find((n) => n.id === facts.primary?.node);
  const target =
    request.node ??
    (lost(recorded) ? recorded!.id : undefined) ??
    facts.nodes.find(lost)?.id ??
    facts.primary?.node ??
    ids[0];
  const node = (id: string | undefined) => facts.nodes.find((n) => n.id === id);
  if (!target || !node(target)) {
    return {
      kind: 'refuse',
      field: 'node',
      message: `"${request.node}" is not a node of the cluster (${ids.join(', ')})`,
    };
  }
  const others = ids.filter((id) => id !== target);
  // A node that knows nothing acknowledged (LSN 0: one that lost its disk and started over)
  // proves nothing: it must not cap "everything" at LSN 0.
  const proof = facts.nodes
    .filter((n) => n.reachable && (n.ackedLsn ?? 0) > 0 && n.status !== 'empty')
    .map((n) => n.ackedLsn as number);
  const requiredLsn = proof.length > 0 ? Math.max(...proof) : undefined;
  if (isRewind(request)) {
    // Leaving bad batches out is no step back in time: every good write around and after them is
    // kept, also those acknowledged while the restore stages (sealed and replayed after the fence).
    const surgical =
      request.excludeLsns !== undefined && request.pointInTime === undefined && request.toLsn === undefined;
    return {
      kind: 'restore',
      target,
      others,
      ...(surgical && requiredLsn !== undefined ? { requiredLsn } : {}),
      why: surgical
        ? `restore ${target} leaving the bad batches out and keeping every write acknowledged around and after them; ` +
          'it opens a new epoch and the other nodes follow its history'
        : `restore ${target} to the point asked for; it opens a new epoch and the other nodes follow its history`,
    };
  }

  const primaryId = facts.primary?.node;
  const primary = node(primaryId);
  const sync = facts.sync;
  const provenStandbys =
    sync && !sync.degraded && facts.primary && sync.epoch === facts.primary.epoch ? sync.standbys : [];
  if (target !== primaryId && healthy(primary) && primary.role === 'primary') {
    return {
      kind: 'rebuild',
      target,
      source: primary.id,
      failoverFirst: false,
      why: `${target} is rebuilt from the primary ${primary.id}, which holds every acknowledged write: nothing is lost`,
    };
  }
  const standby = provenStandbys
    .map((id) => node(id))
    .find((n): n is ClusterNodeFacts => healthy(n) && n.id !== target && n.role === 'replica');
  if (target === primaryId && standby) {
    return {
      kind: 'rebuild',
      target,
      source: standby.id,
      failoverFirst: true,
      why:
        `the primary ${target} fails over to ${standby.id}, the standby shown to hold every acknowledged write, ` +
        `and is rebuilt from it: nothing is lost`,
    };
  }

  // No node can be the source: backups and the archive, up to what the cluster proves acknowledged.
  const unreachable = facts.nodes.filter((n) => !n.reachable).map((n) => n.id);
  const allEmpty = facts.nodes.every((n) => n.reachable && n.status === 'empty');
  if (unreachable.length > 0 && !request.acceptLoss) {
    return {
      kind: 'refuse',
      field: 'acceptLoss',
      message:
        `no node can serve as the source of ${target}, and ${unreachable.join(', ')} cannot be asked what was acknowledged ` +
        `(it may hold acknowledged writes the archive lacks); bring it back and restore again, or pass acceptLoss: true`,
    };
  }
  const why = allEmpty
    ? `every node lost its data: ${target} is restored from backups and the log archive, and the others are rebuilt from it`
    : `no node holds every acknowledged write and can serve as the source: ${target} is restored from backups and the ` +
      `log archive${requiredLsn === undefined ? '' : ` up to the acknowledged LSN ${requiredLsn}`}, and the others follow it`;
  return { kind: 'restore', target, others, ...(requiredLsn === undefined ? {} : { requiredLsn }), why };
}
