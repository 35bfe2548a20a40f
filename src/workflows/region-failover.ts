/**
 * failoverRegion and failbackRegion: the primary moved to another region by an operator
 * (docs/architecture.md, "Regions").
 *
 * failoverRegion runs on the Temporal server of the region that takes over, with its workers,
 * its store and the config center's majority; it needs nothing from the lost region: check →
 * topology lease → fence (epoch CAS) → claim the leadership lease for the new epoch and wait out
 * the old primary's lease (it stops acknowledging before it expires) → elect the most advanced
 * replica of the new region → publish the primary record → promote it (acknowledging without a
 * synchronous standby: recorded as degraded, with the reason) → notify → this region's schedules
 * and monitor. Writes the old primary acknowledged that had not reached the new region's replica
 * stay in the old region's files: the rejoining node keeps them aside.
 *
 * failbackRegion runs on the Temporal of the region the primary returns to: that region's nodes
 * rejoin as replicas (recoverNode), then a switchover moves the primary with no write lost, and
 * that region's schedules and monitor take over; the other region's monitor stands down.
 *
 * Input (paste into the Temporal UI): { "toRegion": "b", "reason": "region a lost", "confirm": true }
 */
import {
  ApplicationFailure,
  ParentClosePolicy,
  WorkflowIdReusePolicy,
  executeChild,
  proxyActivities,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { ControlActivities } from '../activities';
import { recoverWorkflowId, switchoverWorkflowId } from '../failover/input';
import {
  FailbackRegionInputSchema,
  FailoverRegionInputSchema,
  regionFailbackWorkflowId,
  regionFailoverWorkflowId,
  type FailbackRegionInput,
  type FailoverRegionInput,
} from '../failover/region-input';
import { type FailoverResult, notifyAll, recoverNode, switchover } from './cluster';
import { restore } from './restore';
import { applicationCause, explainFailure } from './failure';
import { inputOrFail } from './input';
import { withTopologyLease } from './lease';
import { bounded } from './proxies';
import { DrDatabase, DrOutcome, DrScenario } from './search-attributes';

/** Short calls to the config center and nodes: retried quickly while they do not answer. */
const fast = proxyActivities<ControlActivities>({
  startToCloseTimeout: '10s',
  retry: { initialInterval: '200ms', backoffCoefficient: 2, maximumInterval: '5s' },
});
/** A copy pass between the regions' stores (heartbeats each object). */
const copying = proxyActivities<ControlActivities>({
  startToCloseTimeout: '6h',
  heartbeatTimeout: '2m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m' },
});
/** Waiting out the old primary's leadership lease (its TTL: seconds). */
const waiting = proxyActivities<ControlActivities>({
  startToCloseTimeout: '10m',
  heartbeatTimeout: '5s',
  retry: { initialInterval: '200ms', backoffCoefficient: 2, maximumInterval: '2s' },
});

export interface RegionPhases {
  /** Checks and the topology lease. */
  check: number;
  fence: number;
  /** Waiting out the old primary's leadership lease. */
  lease: number;
  elect?: number;
  config?: number;
  promote?: number;
  /** The region's node restored from its store (when it had no replica with data). */
  restore?: number;
  notify: number;
  /** Schedules applied and the monitor started on this region's Temporal. */
  takeOver: number;
}

export interface FailoverRegionResult {
  cluster: string;
  fromRegion: string;
  toRegion: string;
  /** promoted: the region's replica; restored: its node, from the region's store. */
  method: 'promoted' | 'restored';
  oldPrimary: string;
  /** The old primary's epoch: writes it acknowledged beyond `lsn` are kept aside when it rejoins. */
  oldEpoch: number;
  newPrimary: string;
  epoch: number;
  /** The new primary's LSN when promoted: the new epoch starts after it. */
  lsn: number;
  why: string;
  /** The old primary's leadership lease this move waited out (its `until`), if there was one. */
  oldLeaseUntil?: string;
  /** promoted: the log segments and backups of this region's store beyond `lsn`, retired and marked. */
  abandoned?: { afterLsn: number; segments: number; backups: number };
  /** restored: the restore that brought the node back (RPO: the archive interval + the copy lag). */
  restored?: { workflowId: string; finalLsn: number; segmentsReplayed: number; reason: string };
  /** Milliseconds per phase. */
  phases: RegionPhases;
  /** Workflow start to the new primary promoted, seconds (the operator's part of the RTO). */
  rtoSeconds: number;
  notified: FailoverResult['notified'];
  schedules: { resumed: string[]; created: string[]; updated: string[]; unchanged: string[] };
  monitor: string;
}

function refused(message: string): never {
  throw ApplicationFailure.create({ type: 'InvalidInput', message, nonRetryable: true });
}

function named(cluster: string, scenario: string): void {
  upsertSearchAttributes([
    { key: DrDatabase, value: cluster },
    { key: DrScenario, value: scenario },
  ]);
}

export async function failoverRegion(input: FailoverRegionInput): Promise<FailoverRegionResult> {
  const request = inputOrFail(FailoverRegionInputSchema, input, 'failoverRegion');
  try {
    return await failoverRegionSteps(request);
  } catch (err) {
    upsertSearchAttributes([{ key: DrOutcome, value: isRefusal(err) ? 'refused' : 'failed' }]);
    throw explainFailure(err, `region failover to ${request.toRegion} failed`, 'RegionFailoverFailed');
  }
}

async function failoverRegionSteps(
  request: ReturnType<typeof FailoverRegionInputSchema.parse>,
): Promise<FailoverRegionResult> {
  const t0 = Date.now();
  const plan = await fast.planRegionMove({ ...request, kind: 'failover' });
  named(plan.cluster, 'region-failover');
  if (workflowInfo().workflowId !== regionFailoverWorkflowId(plan.cluster)) {
    refused(
      `workflow id: start failoverRegion with the workflow id "${regionFailoverWorkflowId(plan.cluster)}" (not "${workflowInfo().workflowId}"), so that two region failovers of ${plan.cluster} can never run at once`,
    );
  }
  const moved = await withTopologyLease(
    { cluster: plan.cluster, purpose: 'region-failover', preempt: true, waitForHolder: true },
    async (lease) => {
      // Checked again under the lease: a change that held it may have moved the primary.
      const current = await fast.planRegionMove({ ...request, cluster: plan.cluster, kind: 'failover' });
      if (current.primary.epoch !== plan.primary.epoch) {
        refused(
          `toRegion: while this waited for the topology lease the primary moved (${plan.primary.node} at epoch ${plan.primary.epoch} → ${current.primary.node} at epoch ${current.primary.epoch}); nothing was fenced`,
        );
      }
      const check = Date.now() - t0;
      let t = Date.now();
      const { epoch, previous } = await fast.fenceEpoch({ cluster: plan.cluster, by: lease.holder });
      // A replica behind the newest backup this region's store holds is stale (it was down, or
      // lost its disk and started over): the node is restored from the store rather than promoted.
      const newest = await Promise.all(
        (['L2', 'L3'] as const).map((tier) => fast.newestBackup({ database: plan.cluster, tier })),
      );
      const storeReach = Math.max(0, ...newest.map((m) => m?.snapshot.lsn ?? 0));
      const choice = await fast.electInRegion({
        cluster: plan.cluster,
        region: plan.toRegion,
        epoch: plan.primary.epoch,
        storeReach,
      });
      const claimed = await fast.claimLeaderLease({ cluster: plan.cluster, node: choice.node, epoch });
      const fence = Date.now() - t;

      t = Date.now();
      if (claimed.previous && claimed.previous.epoch < epoch) {
        await waiting.awaitInstant({ until: claimed.previous.until });
      }
      const base = { check, fence, lease: Date.now() - t, oldLeaseUntil: claimed.previous?.until, epoch };
      // No replica with data in the region: it is restored from its store once this lease is
      // given back (the restore takes the lease itself, and publishes and promotes the node).
      if (choice.kind === 'restore') return { kind: 'restore' as const, target: choice, base };

      // Elected again after the wait: the replica may have applied more meanwhile; the claim
      // names whom it was made for, so only the position is refreshed.
      t = Date.now();
      const elected = await fast.electInRegion({
        cluster: plan.cluster,
        region: plan.toRegion,
        epoch: plan.primary.epoch,
        storeReach,
      });
      const chosen = elected.node === choice.node && elected.kind === 'promote' ? elected : choice;
      const elect = Date.now() - t;

      t = Date.now();
      const since = new Date().toISOString();
      await fast.publishPrimary({
        cluster: plan.cluster,
        expectedEpoch: previous?.epoch,
        record: { node: chosen.node, url: chosen.url, epoch, since, failover: workflowInfo().workflowId },
        promoted: false,
      });
      const config = Date.now() - t;

      t = Date.now();
      const promoted = await bounded.promoteNode({
        cluster: plan.cluster,
        node: chosen.node,
        epoch,
        alone: `region failover from ${plan.fromRegion} to ${plan.toRegion}: region ${plan.toRegion} has no synchronous standby`,
      });
      const done = Date.now();
      const promote = done - t;
      // The new history departs from the old one at the promoted node's LSN: what this region's
      // store holds beyond it (segments and backups copied from the lost region, with the writes
      // stranded there) is retired and marked before this region archives anew.
      const abandoned = await abandonAfter(plan.cluster, promoted.lsn);
      return {
        kind: 'promoted' as const,
        base,
        since,
        done,
        phases: { elect, config, promote },
        node: { node: promoted.node, url: promoted.url, lsn: promoted.lsn, why: chosen.why },
        abandoned,
      };
    },
  );

  let restored: FailoverRegionResult['restored'];
  let done: number;
  let since: string;
  let epoch = moved.base.epoch;
  const phases: Partial<RegionPhases> = {};
  let node: { node: string; url: string; lsn: number; why: string };
  if (moved.kind === 'restore') {
    const t = Date.now();
    const workflowId = `${regionFailoverWorkflowId(plan.cluster)}-restore-${moved.target.node}`;
    const result = await executeChild(restore, {
      workflowId,
      // The operator confirmed the region failover: what the lost region alone held is accepted
      // as lost here (and stays in its files).
      args: [{ database: plan.cluster, node: moved.target.node, target: 'in-place', acceptLoss: true }],
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
    });
    done = Date.now();
    phases.restore = done - t;
    since = new Date().toISOString();
    epoch = result.epoch ?? epoch;
    node = { ...moved.target, lsn: result.finalLsn };
    restored = {
      workflowId,
      finalLsn: result.finalLsn,
      segmentsReplayed: result.segmentsReplayed,
      reason: result.reason,
    };
  } else {
    done = moved.done;
    since = moved.since;
    node = moved.node;
    Object.assign(phases, moved.phases);
  }

  let t = Date.now();
  const notified = await notifyAll(plan.webhooks, {
    type: 'primary-changed',
    cluster: plan.cluster,
    database: plan.cluster,
    primary: { node: node.node, url: node.url },
    previous: { node: plan.primary.node, url: plan.primary.url },
    epoch,
    reason: request.reason ?? `region failover from ${plan.fromRegion} to ${plan.toRegion}`,
    kind: 'failover',
    at: since,
  });
  const notify = Date.now() - t;

  t = Date.now();
  const took = await fast.takeOverRegion({ cluster: plan.cluster });
  const takeOver = Date.now() - t;
  const rtoSeconds = (done - t0) / 1000;
  await fast.recordFailover({ cluster: plan.cluster, kind: 'failover', rtoSeconds });
  upsertSearchAttributes([{ key: DrOutcome, value: 'success' }]);
  return {
    cluster: plan.cluster,
    fromRegion: plan.fromRegion,
    toRegion: plan.toRegion,
    method: moved.kind === 'restore' ? 'restored' : 'promoted',
    oldPrimary: plan.primary.node,
    oldEpoch: plan.primary.epoch,
    newPrimary: node.node,
    epoch,
    lsn: node.lsn,
    why: node.why,
    ...(moved.base.oldLeaseUntil ? { oldLeaseUntil: moved.base.oldLeaseUntil } : {}),
    ...(moved.kind === 'promoted' ? { abandoned: moved.abandoned } : {}),
    ...(restored ? { restored } : {}),
    phases: {
      check: moved.base.check,
      fence: moved.base.fence,
      lease: moved.base.lease,
      ...phases,
      notify,
      takeOver,
    },
    rtoSeconds,
    notified,
    schedules: {
      resumed: took.resumed,
      created: took.schedules.created,
      updated: took.schedules.updated,
      unchanged: took.schedules.unchanged,
    },
    monitor: took.monitor,
  };
}

/** What this region's store holds beyond `lsn` (the old history): log segments retired, backups marked bad. */
async function abandonAfter(cluster: string, lsn: number): Promise<NonNullable<FailoverRegionResult['abandoned']>> {
  const tag = workflowInfo().workflowId;
  const segments = await fast.retireArchiveAfter({ database: cluster, lsn, tag });
  const [l2, l3] = await Promise.all(
    (['L2', 'L3'] as const).map((tier) =>
      fast.markBackupsBadAfter({
        database: cluster,
        tier,
        lsn,
        reason: `holds history after LSN ${lsn}, abandoned by region failover ${tag}`,
      }),
    ),
  );
  return { afterLsn: lsn, segments, backups: l2! + l3! };
}

export interface FailbackRegionResult {
  cluster: string;
  fromRegion: string;
  toRegion: string;
  /** This region's store made a copy of the other region's before archiving again. */
  storeSynced?: { copied: number; removed: number; kept: string[] };
  /** The nodes of toRegion that rejoined, and whether each was rebuilt from a snapshot. */
  rejoined: Array<{ node: string; rebuilt: boolean; lsn: number }>;
  from: string;
  to: string;
  epoch: number;
  lsn: number;
  writePauseMs: number;
  monitor: string;
}

export async function failbackRegion(input: FailbackRegionInput): Promise<FailbackRegionResult> {
  const request = inputOrFail(FailbackRegionInputSchema, input, 'failbackRegion');
  try {
    const plan = await fast.planRegionMove({ ...request, kind: 'failback' });
    named(plan.cluster, 'region-failback');
    if (workflowInfo().workflowId !== regionFailbackWorkflowId(plan.cluster)) {
      refused(
        `workflow id: start failbackRegion with the workflow id "${regionFailbackWorkflowId(plan.cluster)}" (not "${workflowInfo().workflowId}")`,
      );
    }
    // Each node of the region rejoins as a replica (a former primary keeps the tail the new
    // epoch does not have aside, then follows); each recovery takes the topology lease itself.
    const rejoined = await Promise.all(
      plan.toNodes.map(async (node) => {
        const r = await executeChild(recoverNode, {
          workflowId: `${recoverWorkflowId(plan.cluster, node)}-failback`,
          args: [{ cluster: plan.cluster, node }],
          parentClosePolicy: ParentClosePolicy.TERMINATE,
          workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
        });
        return { node, rebuilt: r.rebuilt, lsn: r.lsn };
      }),
    );
    // The switchover's own checks pick the most advanced in-sync node of this region.
    const target = rejoined.sort((a, b) => b.lsn - a.lsn)[0]!.node;
    const moved = await executeChild(switchover, {
      workflowId: switchoverWorkflowId(plan.cluster, new Date()),
      args: [
        {
          cluster: plan.cluster,
          to: target,
          reason: request.reason ?? `failback to region ${plan.toRegion}`,
          ...(request.underLease ? { underLease: request.underLease } : {}),
        },
      ],
    });
    // This region's store takes what the other region's received meanwhile (the new history,
    // retirements, backups) before this region archives into it again.
    const synced = plan.fromIsStandby ? await copying.copyFromRegionPass({ region: plan.fromRegion }) : undefined;
    const took = await fast.takeOverRegion({ cluster: plan.cluster });
    upsertSearchAttributes([{ key: DrOutcome, value: 'success' }]);
    return {
      cluster: plan.cluster,
      fromRegion: plan.fromRegion,
      toRegion: plan.toRegion,
      ...(synced ? { storeSynced: { copied: synced.copied, removed: synced.removed, kept: synced.kept } } : {}),
      rejoined,
      from: moved.from,
      to: moved.to,
      epoch: moved.epoch,
      lsn: moved.lsn,
      writePauseMs: moved.writePauseMs,
      monitor: took.monitor,
    };
  } catch (err) {
    upsertSearchAttributes([{ key: DrOutcome, value: isRefusal(err) ? 'refused' : 'failed' }]);
    throw explainFailure(err, `region failback to ${request.toRegion} failed`, 'RegionFailbackFailed');
  }
}

function isRefusal(err: unknown): boolean {
  return applicationCause(err)?.type === 'InvalidInput';
}
