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
import { applicationCause, explainFailure } from './failure';
import { inputOrFail } from './input';
import { withTopologyLease } from './lease';
import { DrDatabase, DrOutcome, DrScenario } from './search-attributes';

/** Short calls to the config center and nodes: retried quickly while they do not answer. */
const fast = proxyActivities<ControlActivities>({
  startToCloseTimeout: '10s',
  retry: { initialInterval: '200ms', backoffCoefficient: 2, maximumInterval: '5s' },
});
/** A promotion: a node that does not answer fails the move after ~30 s, naming it. */
const bounded = proxyActivities<ControlActivities>({
  startToCloseTimeout: '10s',
  scheduleToCloseTimeout: '30s',
  retry: { initialInterval: '200ms', backoffCoefficient: 2, maximumInterval: '2s' },
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
  elect: number;
  config: number;
  promote: number;
  notify: number;
  /** Schedules applied and the monitor started on this region's Temporal. */
  takeOver: number;
}

export interface FailoverRegionResult {
  cluster: string;
  fromRegion: string;
  toRegion: string;
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
  return withTopologyLease(
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
      const choice = await fast.electInRegion({ cluster: plan.cluster, region: plan.toRegion });
      const claimed = await fast.claimLeaderLease({ cluster: plan.cluster, node: choice.node, epoch });
      const fence = Date.now() - t;

      t = Date.now();
      if (claimed.previous && claimed.previous.epoch < epoch)
        await waiting.awaitInstant({ until: claimed.previous.until });
      const leaseWait = Date.now() - t;

      // Elected again after the wait: the replica may have applied more meanwhile (or another
      // region node come up further ahead); the claim names whom it was made for, so only the
      // position is refreshed.
      t = Date.now();
      const elected = await fast.electInRegion({ cluster: plan.cluster, region: plan.toRegion });
      const chosen = elected.node === choice.node ? elected : choice;
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

      t = Date.now();
      const notified = await notifyAll(plan.webhooks, {
        type: 'primary-changed',
        cluster: plan.cluster,
        database: plan.cluster,
        primary: { node: promoted.node, url: promoted.url },
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
        oldPrimary: plan.primary.node,
        oldEpoch: plan.primary.epoch,
        newPrimary: promoted.node,
        epoch,
        lsn: promoted.lsn,
        why: chosen.why,
        ...(claimed.previous ? { oldLeaseUntil: claimed.previous.until } : {}),
        phases: { check, fence, lease: leaseWait, elect, config, promote, notify, takeOver },
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
    },
  );
}

export interface FailbackRegionResult {
  cluster: string;
  fromRegion: string;
  toRegion: string;
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
      args: [{ cluster: plan.cluster, to: target, reason: request.reason ?? `failback to region ${plan.toRegion}` }],
    });
    const took = await fast.takeOverRegion({ cluster: plan.cluster });
    upsertSearchAttributes([{ key: DrOutcome, value: 'success' }]);
    return {
      cluster: plan.cluster,
      fromRegion: plan.fromRegion,
      toRegion: plan.toRegion,
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
