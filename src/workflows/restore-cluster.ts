/**
 * An in-place restore of a node of a replicated cluster, under the cluster's topology lease: never
 * loses an acknowledged write unless the operator asked to go back in time, and leaves one history
 * (docs/architecture.md, rules 10 and 11). restore-plan/cluster-plan.ts decides how:
 *
 * - rebuild: the node is rebuilt from a node that holds every acknowledged write (the primary, or
 *   the proven standby after failing over to it when the node is the primary). Its file is moved
 *   aside by the node; nothing acknowledged is lost and no backup is read.
 * - backup: the node is restored from a backup and the archived log — up to the acknowledged head
 *   the cluster proves, or to the point asked for — while the cluster keeps serving; then every
 *   node is fenced (a new epoch, recorded first), the staged file goes in, the abandoned part of
 *   the archive is retired, the restored node is published and promoted at the new epoch, and the
 *   others follow it: a healthy one rejoins and cuts its tail at the fork, a damaged or empty one
 *   (and every one after a restore that left batches out) is rebuilt from it.
 */
import {
  ApplicationFailure,
  ParentClosePolicy,
  WorkflowIdReusePolicy,
  executeChild,
  proxyActivities,
  sleep,
  startChild,
  workflowInfo,
} from '@temporalio/workflow';
import type { ControlActivities, ResolvedRestore } from '../activities';
import { failoverWorkflowId, recoverWorkflowId } from '../failover/input';
import { REBUILD_STATES } from '../failover/node-states';
import { type ClusterRestoreDecision, decideClusterRestore } from '../restore/cluster-plan';
import type { ParsedRestoreInput } from '../restore/input';
import { failover, recoverNode } from './cluster';
import { withTopologyLease } from './lease';
import { control } from './proxies';
import {
  type RestoreResult,
  backupResult,
  fail,
  holdingBackups,
  markBackupsAfter,
  outcome,
  planOn,
  replayMore,
  stageAndReplay,
  swapInPlace,
} from './restore-steps';

/** Quick calls to the config center and nodes; a node that died meanwhile must not hold the lease. */
const quick = proxyActivities<ControlActivities>({
  startToCloseTimeout: '20s',
  scheduleToCloseTimeout: '2m',
  retry: { initialInterval: '200ms', backoffCoefficient: 2, maximumInterval: '5s' },
});
const once = proxyActivities<ControlActivities>({ startToCloseTimeout: '10s', retry: { maximumAttempts: 1 } });
/** Waiting for a node to be in sync after a rebuild or a rejoin (heartbeats its progress). */
const waiting = proxyActivities<ControlActivities>({
  startToCloseTimeout: '2h',
  heartbeatTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s' },
});

/** How long a restore waits for the archive to seal what was acknowledged (before planning, and after fencing). */
const ARCHIVE_WAIT_MS = 60_000;

function refused(field: string, message: string): never {
  throw ApplicationFailure.create({
    type: 'InvalidInput',
    message: `restore refused: ${field}: ${message}`,
    details: [{ field }],
    nonRetryable: true,
  });
}

export async function restoreCluster(
  resolved: ResolvedRestore & { cluster: string },
  request: ParsedRestoreInput,
  started: Date,
): Promise<RestoreResult> {
  const { cluster } = resolved;
  // The node to restore is decided once: after a failover the default (the primary) is another.
  let asked = request;
  for (let attempt = 1; ; attempt++) {
    const facts = await quick.clusterFacts({ cluster });
    const decision = decideClusterRestore(asked, facts);
    if (decision.kind === 'refuse') {
      outcome('refused');
      refused(decision.field, decision.message);
    }
    // The node the decision restores, with its queue and data directory.
    const target =
      decision.target === resolved.node.id
        ? resolved
        : { ...(await control.resolveRestoreTarget({ request: { ...request, node: decision.target } })), cluster };
    // A repair comes first: it takes over a drill's lease (as a failover does).
    const done = await withTopologyLease(
      { cluster, purpose: 'restore', waitForHolder: true, preempt: true },
      async (lease) => {
        if (decision.kind === 'rebuild') return rebuildFromNode(cluster, decision, request, started, lease.holder);
        return restoreFromBackup(target, decision, request, started, lease.holder);
      },
    );
    if (done) return done;
    asked = { ...request, node: decision.target };
    // The monitor is failing over from the node already, and waits for the lease this restore
    // held: let it go, let the failover finish, and decide again from what the cluster is then.
    if (attempt >= FAILOVER_WAIT_ATTEMPTS) {
      outcome('failed');
      throw ApplicationFailure.create({
        type: 'TopologyBusy',
        message: `restore gave up: a failover of ${cluster} kept running for ${attempt} attempts; nothing was changed by this restore`,
        nonRetryable: true,
      });
    }
    await sleep('2s');
  }
}

/** How many times a restore lets a running failover finish before it gives up. */
const FAILOVER_WAIT_ATTEMPTS = 30;

async function rebuildFromNode(
  cluster: string,
  decision: Extract<ClusterRestoreDecision, { kind: 'rebuild' }>,
  request: ParsedRestoreInput,
  started: Date,
  holder: string,
): Promise<RestoreResult | undefined> {
  let failedOver: RestoreResult['failedOver'];
  if (decision.failoverFirst) {
    const moved = await executeChild(failover, {
      workflowId: failoverWorkflowId(cluster),
      args: [
        {
          cluster,
          failedNode: decision.target,
          force: true,
          reason: `restore ${workflowInfo().workflowId}: ${decision.why}`,
          underLease: holder,
        },
      ],
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
    }).catch((err: unknown) => {
      // A failover of the cluster is running already (the monitor found the damage first).
      if ((err as Error).name === 'WorkflowExecutionAlreadyStartedError') return undefined;
      throw err;
    });
    if (!moved) return undefined;
    failedOver = { newPrimary: moved.newPrimary, epoch: moved.epoch };
  }
  const rebuilt = await quick.rebuildNode({ cluster, node: decision.target });
  const synced = await waiting.awaitRebuilt({
    cluster,
    node: decision.target,
    before: rebuilt.before,
    primary: rebuilt.primary,
  });
  const rtoSeconds = (Date.now() - started.getTime()) / 1000;
  await control.recordRestoreMetrics({ database: request.database, rtoSeconds, test: false });
  outcome('success');
  return {
    database: request.database,
    node: decision.target,
    target: 'in-place',
    method: 'rebuild',
    rebuiltFrom: rebuilt.primary,
    ...(failedOver ? { failedOver } : {}),
    fellBackFrom: [],
    segmentsReplayed: 0,
    rowsReplayed: 0,
    finalLsn: synced.lsn,
    rtoSeconds,
    reason: decision.why,
  };
}

async function restoreFromBackup(
  target: ResolvedRestore & { cluster: string },
  decision: Extract<ClusterRestoreDecision, { kind: 'restore' }>,
  request: ParsedRestoreInput,
  started: Date,
  holder: string,
): Promise<RestoreResult> {
  const { cluster } = target;
  const database = request.database;
  let plan;
  try {
    // The archive trails the acknowledged head by an interval: give it the time to seal what the
    // cluster proves acknowledged before planning, while nothing has changed yet.
    if (decision.requiredLsn !== undefined) await archiveReaches(database, decision.requiredLsn);
    plan = await planOn(target, request, [], decision.requiredLsn);
  } catch (err) {
    outcome('refused');
    fail(err, 'restore refused');
  }
  return holdingBackups(plan, async (hold) => {
    // Staged while the cluster keeps serving: the longest part costs no write.
    let ready = await stageAndReplay(target, plan, request, hold, decision.requiredLsn);

    // From here no node takes a write: a new epoch, recorded first, and every node told.
    const fenced = await quick.fenceEpoch({ cluster, by: holder });
    const facts = await quick.clusterFacts({ cluster });
    await Promise.all(
      facts.nodes.filter((n) => n.reachable).map((n) => once.stepDown({ cluster, node: n.id, epoch: fenced.epoch })),
    );
    const acked = Math.max(0, ...(await quick.clusterFacts({ cluster })).nodes.map((n) => n.ackedLsn ?? 0));

    let discarded: RestoreResult['discarded'];
    if (decision.requiredLsn !== undefined && acked > ready.replayed.reachedLsn) {
      // Acknowledged while the backup was staged: sealed now from the fenced node that holds it.
      const reach = await quick.sealAcknowledged({ database }).catch(() => archiveReaches(database, acked));
      if (reach < acked && !request.acceptLoss) {
        outcome('failed');
        throw ApplicationFailure.create({
          type: 'AcknowledgedNotArchived',
          message:
            `restore stopped before the swap: LSN ${reach + 1} → ${acked} were acknowledged but did not reach the log archive ` +
            `within ${ARCHIVE_WAIT_MS / 1000} s; every node is fenced at epoch ${fenced.epoch} and none was changed. ` +
            `Bring back a node that holds them (restore again), or restore with acceptLoss: true`,
          nonRetryable: true,
        });
      }
      ready = await replayMore(ready, database, Math.min(reach, acked));
      if (reach < acked) ready.plan = { ...ready.plan, lost: { fromLsn: reach + 1, toLsn: acked } };
    } else if (acked > ready.replayed.reachedLsn) {
      discarded = { fromLsn: ready.replayed.reachedLsn + 1, toLsn: acked };
    }

    const movedAside = await swapInPlace(ready, database, started);
    // Where the new history departs from the old one: the restored LSN, or the first batch left out.
    const firstLeftOut = ready.plan.excludedLsns?.[0]?.fromLsn;
    const fork = firstLeftOut !== undefined ? firstLeftOut - 1 : ready.replayed.reachedLsn;
    await control.retireArchiveAfter({ database, lsn: fork, tag: workflowInfo().workflowId });

    // Every node holds the fence's epoch now; the restored history opens the one after it, which
    // names where it begins (the fork), so the nodes that follow cut what lies beyond.
    const opened = await quick.fenceEpoch({ cluster, by: `${holder}/open` });
    const since = new Date().toISOString();
    await quick.publishPrimary({
      cluster,
      expectedEpoch: fenced.previous?.epoch,
      record: {
        node: target.node.id,
        url: target.node.url,
        epoch: opened.epoch,
        since,
        failover: workflowInfo().workflowId,
      },
      promoted: false,
    });
    await quick.promoteNode({ cluster, node: target.node.id, epoch: opened.epoch, forkLsn: fork });
    const rtoSeconds = (Date.now() - started.getTime()) / 1000;

    const followers = await follow(cluster, decision.others, firstLeftOut !== undefined);
    await markBackupsAfter(target, database, fork);
    await control.recordRestoreMetrics({ database, rtoSeconds, test: false });
    outcome('success');
    return {
      ...backupResult(request, ready),
      epoch: opened.epoch,
      ...(discarded ? { discarded } : {}),
      followers,
      ...(movedAside ? { movedAside } : {}),
      rtoSeconds,
      reason: `${decision.why}; ${ready.plan.reason}`,
    };
  });
}

/** Waits up to ARCHIVE_WAIT_MS for the log archive to reach `lsn`; returns how far it reaches. */
async function archiveReaches(database: string, lsn: number): Promise<number> {
  const deadline = Date.now() + ARCHIVE_WAIT_MS;
  let reach = await quick.archivedThrough({ database });
  while (reach < lsn && Date.now() < deadline) {
    await sleep('1s');
    reach = await quick.archivedThrough({ database });
  }
  return reach;
}

/**
 * The other nodes follow the restored primary: a healthy one rejoins (its tail after the fork is
 * cut when it hears of the new epoch); a damaged or empty one, and every one when batches were left
 * out (their files hold those batches below the fork), is rebuilt from a snapshot of the primary.
 * A node that does not answer is left to recoverNode, which waits for it.
 */
async function follow(
  cluster: string,
  others: string[],
  rebuildAll: boolean,
): Promise<NonNullable<RestoreResult['followers']>> {
  const facts = await quick.clusterFacts({ cluster });
  return Promise.all(
    others.map(async (id) => {
      const node = facts.nodes.find((n) => n.id === id);
      if (!node?.reachable) {
        await startChild(recoverNode, {
          workflowId: recoverWorkflowId(cluster, id),
          args: [{ cluster, node: id }],
          parentClosePolicy: ParentClosePolicy.ABANDON,
          workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
        }).catch(() => undefined);
        return { node: id, how: 'away' as const };
      }
      if (rebuildAll || REBUILD_STATES.includes(node.status ?? '')) {
        const rebuilt = await quick.rebuildNode({ cluster, node: id });
        await waiting.awaitRebuilt({ cluster, node: id, before: rebuilt.before, primary: rebuilt.primary });
        return { node: id, how: 'rebuilt' as const };
      }
      await quick.rejoinNode({ cluster, node: id });
      await waiting.awaitInSync({ cluster, node: id });
      return { node: id, how: 'rejoined' as const };
    }),
  );
}
