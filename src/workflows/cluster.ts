/**
 * Failover, switchover, recoverNode and monitorCluster: one writer, fenced by epochs, one
 * topology change at a time (docs/architecture.md).
 *
 * failover: confirm → take the cluster's topology lease → fence (epoch CAS in the config center;
 * the old primary told to step down if it answers) → elect (the healthy replica with the highest
 * applied LSN among those that hold every acknowledged write) → publish the primary record (CAS
 * on the epoch the fence started from) → promote → notify clients (signed webhooks, each
 * delivered once) → recoverNode for the failed node as an abandoned child that outlives the
 * failover. Publishing before promoting means a refused publish (someone else recorded a newer
 * primary meanwhile) leaves nothing promoted: no node ever acknowledges under an epoch the config
 * center does not name. Input for the Temporal UI:
 *   { "failedNode": "node1", "reason": "host lost" }
 * monitorCluster ({}) watches and starts failover; switchover ({ "to": "node2" }) moves the
 * primary with no write lost; recoverNode ({ "node": "node1" }) rejoins a node as replica.
 */
import {
  ApplicationFailure,
  CancellationScope,
  ParentClosePolicy,
  WorkflowIdReusePolicy,
  makeContinueAsNewFunc,
  sleep,
  proxyActivities,
  proxyLocalActivities,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { ControlActivities } from '../activities';
import {
  FAILOVER_TASK_TIMEOUT,
  FailoverInputSchema,
  MonitorInputSchema,
  RecoverNodeInputSchema,
  SwitchoverInputSchema,
  failoverWorkflowId,
  recoverWorkflowId,
  type FailoverInput,
  type MonitorInput,
  type RecoverNodeInput,
  type SwitchoverInput,
} from '../failover/input';
import { applicationCause, explainFailure } from './failure';
import { bounded, localThenVisible } from './proxies';
import { inputOrFail } from './input';
import { withTopologyLease } from './lease';
import { REBUILD_STATES } from '../failover/node-states';
import { DrDatabase, DrOutcome, DrScenario } from './search-attributes';

/**
 * Failover steps are short calls; a down config center or node is retried quickly, and a step
 * taken by a worker that froze with its zone is retried elsewhere after 8 s.
 */
const fast = proxyActivities<ControlActivities>({
  startToCloseTimeout: '8s',
  retry: { initialInterval: '200ms', backoffCoefficient: 2, maximumInterval: '5s' },
});
/**
 * A failover's own steps run in the worker that runs the failover (local activities): a task
 * handed to a worker that froze with its zone (it still holds long polls, so Temporal may give it
 * tasks it never answers) would cost each step a timeout. Only the failover's workflow tasks can
 * meet such a worker, and FAILOVER_TASK_TIMEOUT bounds those.
 */
const local = proxyLocalActivities<ControlActivities>({
  startToCloseTimeout: '8s',
  retry: { maximumAttempts: 1 },
});

/**
 * A failover's steps: once in this worker, then as visible, retried activities (localThenVisible);
 * a failover waiting for a config center that is down says so in the UI.
 */
const step = localThenVisible(local, fast);
const stepOnce = proxyLocalActivities<ControlActivities>({
  startToCloseTimeout: '3s',
  retry: { maximumAttempts: 1 },
});
const stepBounded = proxyLocalActivities<ControlActivities>({
  startToCloseTimeout: '10s',
  scheduleToCloseTimeout: '30s',
  retry: { initialInterval: '200ms', backoffCoefficient: 2, maximumInterval: '2s' },
});
const waiting = proxyActivities<ControlActivities>({
  startToCloseTimeout: '30m',
  heartbeatTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s' },
});
/**
 * The monitor's watch heartbeats every probe: when the worker running it is lost (with its zone),
 * the watch is retried on another worker after the heartbeat timeout (2 s; it beats every ≤1 s).
 */
const WATCH_OPTIONS = {
  startToCloseTimeout: '15m',
  heartbeatTimeout: '2s',
  // Retried at once: an attempt lost with a frozen worker must not add a growing backoff.
  retry: { initialInterval: '200ms', backoffCoefficient: 1 },
} as const;
const watcher = proxyActivities<ControlActivities>(WATCH_OPTIONS);
/** A sentry: the watch on a node's queue, in that node's zone (sentryNodes). */
const sentryOn = (taskQueue: string) =>
  proxyActivities<Pick<ControlActivities, 'watchCluster'>>({ ...WATCH_OPTIONS, taskQueue });
/**
 * Webhooks: the first attempt in this worker (a delivery handed to a worker frozen with its zone
 * would wait out the whole timeout), then retried until delivered (a receiver's 4xx is final).
 */
const deliveries = localThenVisible(
  proxyLocalActivities<ControlActivities>({ startToCloseTimeout: '30s', retry: { maximumAttempts: 1 } }),
  proxyActivities<ControlActivities>({
    startToCloseTimeout: '30s',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' },
  }),
);

export interface Phases {
  detect?: number;
  confirm: number;
  fence: number;
  elect: number;
  promote: number;
  config: number;
  notify: number;
}

export interface FailoverResult {
  cluster: string;
  failedNode: string;
  newPrimary: string;
  epoch: number;
  lsn: number;
  why: string;
  oldPrimaryAnswered: boolean;
  /** Milliseconds per phase. */
  phases: Phases;
  /** First failed probe (or the start) to the new primary promoted (after it was published), seconds. */
  rtoSeconds: number;
  notified: Array<{ webhook: number; ok: boolean; detail: string }>;
  recoverWorkflowId: string;
  /** The lease this failover took over (a drill's), described. */
  preempted?: string;
}

function failInput(message: string): never {
  throw ApplicationFailure.create({ type: 'InvalidInput', message, nonRetryable: true });
}

export async function notifyAll(
  webhooks: number,
  event: Omit<Parameters<ControlActivities['notifyWebhook']>[0]['event'], 'deliveryId'>,
): Promise<FailoverResult['notified']> {
  const deliveryId = `${workflowInfo().workflowId}-${workflowInfo().runId}-epoch${event.epoch}`;
  return Promise.all(
    Array.from({ length: webhooks }, async (_, index) => {
      try {
        const r = await deliveries.notifyWebhook({ index, event: { ...event, deliveryId } });
        return { webhook: index, ok: true, detail: `HTTP ${r.status} in ${r.ms} ms` };
      } catch (err) {
        return { webhook: index, ok: false, detail: (err as Error).message };
      }
    }),
  );
}

export async function failover(input: FailoverInput): Promise<FailoverResult> {
  const request = inputOrFail(FailoverInputSchema, input, 'failover');
  const outcome = (value: string) => upsertSearchAttributes([{ key: DrOutcome, value }]);
  let cluster = request.cluster ?? 'the cluster';
  try {
    return await failoverSteps(request, (name) => (cluster = name));
  } catch (err) {
    outcome(err instanceof ApplicationFailure && err.type === 'InvalidInput' ? 'refused' : 'failed');
    throw explainFailure(err, `failover of ${cluster} from ${request.failedNode} failed`, 'FailoverFailed');
  }
}

async function failoverSteps(
  request: ReturnType<typeof FailoverInputSchema.parse>,
  named: (cluster: string) => void,
): Promise<FailoverResult> {
  const t0 = Date.now();
  const mark = () => Date.now();
  const { cluster, webhooks } = await step.resolveCluster({
    cluster: request.cluster,
    nodes: [{ id: request.failedNode, field: 'failedNode' }],
  });
  named(cluster);
  upsertSearchAttributes([
    { key: DrDatabase, value: cluster },
    { key: DrScenario, value: 'failover' },
  ]);
  if (workflowInfo().workflowId !== failoverWorkflowId(cluster)) {
    failInput(
      `workflow id: start failover with the workflow id "${failoverWorkflowId(cluster)}" (not "${workflowInfo().workflowId}"), so that two failovers of ${cluster} can never run at once`,
    );
  }

  let t = mark();
  // The monitor already saw the failure from two vantage points: one more probe confirms it.
  const confirmed = await step.confirmFailure({
    cluster,
    node: request.failedNode,
    ...(request.detectedAt ? { probes: 1 } : {}),
  });
  if (confirmed.notPrimary) failInput(`failedNode: ${confirmed.detail}`);
  if (!confirmed.down && !request.force) {
    failInput(
      `failedNode: ${confirmed.detail}; it is healthy, so there is nothing to fail over (pass force: true to move the primary anyway)`,
    );
  }
  const confirm = mark() - t;

  // A real failover takes over a drill's lease, and waits a while for any other change to end.
  return withTopologyLease(
    { cluster, purpose: 'failover', preempt: true, waitForHolder: true, under: request.underLease, urgent: true },
    async (lease) => {
      t = mark();
      const { epoch, previous } = await step.fenceEpoch({ cluster, by: lease.holder });
      // The failure was confirmed before the lease: another change (a restore, a switchover) may
      // have moved the primary while this waited for it. Then there is nothing to fail over; the
      // epoch just taken stays unused, and no node was told anything.
      if (
        confirmed.epoch !== undefined &&
        previous &&
        (previous.epoch !== confirmed.epoch || previous.node !== request.failedNode)
      ) {
        failInput(
          `failedNode: while this failover waited for the topology lease the primary record changed ` +
            `(${request.failedNode} at epoch ${confirmed.epoch} → ${previous.node} at epoch ${previous.epoch}); nothing was fenced`,
        );
      }
      // A node that answered (damaged, or moved by force) may still acknowledge through its
      // standby: it steps down before the election reads the replicas' positions. One that did not
      // answer at all (killed, frozen) would only make the failover wait out a timeout, so telling
      // it goes on beside the election. (A node that answers no probe yet still reaches its
      // standby — a partial partition the monitor's replica witness makes unlikely — could
      // acknowledge through it meanwhile; the election prefers the standby on equal positions.)
      const steppingDown = stepOnce
        .stepDown({ cluster, node: request.failedNode, epoch })
        .catch((err: Error) => ({ answered: false, detail: err.message }));
      if (confirmed.answered !== false) await steppingDown;
      const fence = mark() - t;

      t = mark();
      const choice = await step.electReplica({ cluster, failedNode: request.failedNode, force: request.force });
      const elect = mark() - t;

      // Published before promoted: if the config center refuses (a newer primary was recorded
      // meanwhile), nothing has been promoted and the cluster follows the record it holds.
      t = mark();
      const since = new Date().toISOString();
      await step.publishPrimary({
        cluster,
        expectedEpoch: previous?.epoch,
        record: { node: choice.node, url: choice.url, epoch, since, failover: workflowInfo().workflowId },
        promoted: false,
      });
      const config = mark() - t;

      t = mark();
      const promoted = await stepBounded.promoteNode({
        cluster,
        node: choice.node,
        epoch,
        exclude: request.failedNode,
      });
      const done = mark();
      const promote = done - t;

      t = mark();
      // Notifications are retried until delivered: a receiver that is down must not hold back the
      // recovery of the failed node, so recoverNode starts while they are on their way.
      const notifying = notifyAll(webhooks, {
        type: 'primary-changed',
        cluster,
        database: cluster,
        primary: { node: promoted.node, url: promoted.url },
        previous: { node: request.failedNode, ...(previous?.url ? { url: previous.url } : {}) },
        epoch,
        reason: request.reason ?? request.evidence ?? 'failover',
        kind: 'failover',
        at: since,
      }).then((delivered) => ({ delivered, at: mark() }));

      const recoverId = await startRecovery(cluster, request.failedNode);
      const down = await steppingDown;

      const from = request.detectedAt ?? t0;
      const rtoSeconds = (done - from) / 1000;
      await step.recordFailover({ cluster, kind: 'failover', rtoSeconds });
      const { delivered: notified, at: notifiedAt } = await notifying;
      const notify = notifiedAt - t;
      upsertSearchAttributes([{ key: DrOutcome, value: 'success' }]);
      return {
        cluster,
        failedNode: request.failedNode,
        newPrimary: promoted.node,
        epoch,
        lsn: promoted.lsn,
        why: choice.why,
        oldPrimaryAnswered: down.answered,
        ...(lease.preempted ? { preempted: lease.preempted } : {}),
        phases: {
          ...(request.detectedAt ? { detect: t0 - request.detectedAt } : {}),
          confirm,
          fence,
          elect,
          config,
          promote,
          notify,
        },
        rtoSeconds,
        notified,
        recoverWorkflowId: recoverId,
      };
    },
  );
}

/** Starts recoverNode for a node as an abandoned child; one already running for it is left to do it. */
async function startRecovery(cluster: string, node: string): Promise<string> {
  const workflowId = recoverWorkflowId(cluster, node);
  try {
    await startChild(recoverNode, {
      workflowId,
      args: [{ cluster, node }],
      parentClosePolicy: ParentClosePolicy.ABANDON,
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
    });
  } catch (err) {
    if ((err as Error).name !== 'WorkflowExecutionAlreadyStartedError') throw err;
  }
  return workflowId;
}

export interface RecoverNodeResult {
  cluster: string;
  node: string;
  epoch: number;
  role: string;
  lsn: number;
  /** The node was damaged or empty and was rebuilt from a snapshot of the primary. */
  rebuilt: boolean;
}

/**
 * Waits for the node to come back, rejoins it as replica, and waits until it is in sync. Only the
 * rejoin holds the topology lease: waiting for a dead node, or for a replica to catch up, must not
 * block the next failover.
 */
export async function recoverNode(input: RecoverNodeInput): Promise<RecoverNodeResult> {
  const request = inputOrFail(RecoverNodeInputSchema, input, 'recoverNode');
  try {
    const { cluster } = await fast.resolveCluster({
      cluster: request.cluster,
      nodes: [{ id: request.node, field: 'node' }],
    });
    upsertSearchAttributes([
      { key: DrDatabase, value: cluster },
      { key: DrScenario, value: 'recover-node' },
    ]);
    for (;;) {
      const seen = await waiting.awaitNode({ cluster, node: request.node });
      let joined: { epoch: number; role: string; before?: number; primary?: string };
      try {
        joined = await withTopologyLease(
          {
            cluster,
            purpose: REBUILD_STATES.includes(seen.status ?? '') ? 'rebuild' : 'rejoin',
            waitForHolder: true,
            // A drill's lease gives way: the node it faulted must come back for it to heal.
            preempt: true,
          },
          async () => {
            // Looked at again under the lease: the change that held it (a restore, a rebuild)
            // may have repaired the node meanwhile. A damaged or empty node has nothing worth
            // keeping in place: the primary rebuilds it from a snapshot (its file is moved
            // aside). Any other node rejoins and catches up by the log.
            const view = (await bounded.clusterFacts({ cluster })).nodes.find((n) => n.id === request.node);
            if (!view?.reachable) {
              throw ApplicationFailure.create({ type: 'NodeAway', message: `${request.node} went away again` });
            }
            if (!REBUILD_STATES.includes(view.status ?? '')) return bounded.rejoinNode({ cluster, node: request.node });
            const started = await bounded.rebuildNode({ cluster, node: request.node });
            return { epoch: started.epoch, role: 'replica', before: started.before, primary: started.primary };
          },
        );
      } catch (err) {
        // Another change held the lease all along, or the node went away again: start over.
        const type = applicationCause(err)?.type;
        if (type === 'InvalidInput' || type === 'InvalidConfig') throw err;
        await sleep('5s');
        continue;
      }
      const synced =
        joined.role !== 'replica'
          ? { lsn: 0 }
          : joined.before !== undefined
            ? await waiting.awaitRebuilt({
                cluster,
                node: request.node,
                before: joined.before,
                primary: joined.primary,
              })
            : await waiting.awaitInSync({ cluster, node: request.node });
      upsertSearchAttributes([{ key: DrOutcome, value: 'success' }]);
      return {
        cluster,
        node: request.node,
        epoch: joined.epoch,
        role: joined.role,
        lsn: synced.lsn,
        rebuilt: joined.before !== undefined,
      };
    }
  } catch (err) {
    upsertSearchAttributes([{ key: DrOutcome, value: 'failed' }]);
    throw explainFailure(err, `recovery of node ${request.node} failed`, 'RecoverFailed');
  }
}

export interface SwitchoverResult {
  cluster: string;
  from: string;
  to: string;
  epoch: number;
  lsn: number;
  /** Milliseconds writes were refused: from the drain to the new primary promoted. */
  writePauseMs: number;
  notified: FailoverResult['notified'];
}

/** Who moves where, from a fresh status; refuses (InvalidInput) what cannot be switched over. */
async function planSwitchover(request: ReturnType<typeof SwitchoverInputSchema.parse>) {
  const status = await fast.clusterStatus({ cluster: request.cluster });
  const cluster = status.cluster;
  const { webhooks } = await fast.resolveCluster({
    cluster,
    nodes: request.to ? [{ id: request.to, field: 'to' }] : [],
  });
  const current = status.primary;
  const primaryView = current && status.nodes.find((n) => n.id === current.node);
  if (!current || !primaryView?.reachable || primaryView.role !== 'primary') {
    failInput(
      `cluster: no reachable primary to switch over from (${current ? `${current.node} does not answer as primary` : 'none recorded'}); use failover`,
    );
  }
  const links = primaryView.replicas ?? [];
  const target =
    request.to ??
    links.filter((l) => l.state === 'in-sync').sort((a, b) => (b.appliedLsn ?? 0) - (a.appliedLsn ?? 0))[0]?.id;
  if (!target) failInput('to: no in-sync replica to switch over to');
  if (target === current.node) failInput(`to: ${target} is already the primary`);
  const link = links.find((l) => l.id === target);
  if (!link || link.state !== 'in-sync') {
    failInput(
      `to: ${target} is not an in-sync replica of ${current.node} (${link ? link.state : 'not replicating'}); wait for it to catch up`,
    );
  }
  return { cluster, webhooks, current, target, url: status.nodes.find((n) => n.id === target)!.url };
}

/**
 * A planned move of the primary under the topology lease: drain, catch up, publish, promote. No
 * acknowledged write is lost.
 */
export async function switchover(input: SwitchoverInput = {}): Promise<SwitchoverResult> {
  const request = inputOrFail(SwitchoverInputSchema, input, 'switchover');
  try {
    // Another change holding the lease is named first; then the request is checked before the
    // lease is taken (so one that cannot succeed changes nothing), and again under it.
    const { cluster: name } = await fast.resolveCluster({ cluster: request.cluster });
    const refuseIfLeased = () =>
      request.underLease ? Promise.resolve() : fast.refuseIfLeased({ cluster: name, purpose: 'switchover' });
    await refuseIfLeased();
    // A change that started meanwhile explains an odd state (no primary, a replica catching up)
    // better than the state itself does.
    const first = await planSwitchover({ ...request, cluster: name }).catch(async (err: unknown) => {
      await refuseIfLeased();
      throw err;
    });
    upsertSearchAttributes([
      { key: DrDatabase, value: first.cluster },
      { key: DrScenario, value: 'switchover' },
    ]);
    return await withTopologyLease(
      { cluster: first.cluster, purpose: 'switchover', under: request.underLease },
      async (lease) => {
        const { cluster, webhooks, current, target, url } = await planSwitchover({
          ...request,
          cluster: first.cluster,
        });
        const { epoch } = await fast.fenceEpoch({ cluster, by: lease.holder });
        const paused = Date.now();
        const drained = await bounded.drainPrimary({ cluster, node: current.node, epoch, to: target });
        await bounded.awaitCaughtUp({ cluster, node: target, lsn: drained.lsn });
        const since = new Date().toISOString();
        await fast.publishPrimary({
          cluster,
          expectedEpoch: current.epoch,
          record: { node: target, url, epoch, since, failover: workflowInfo().workflowId },
          promoted: false,
        });
        const promoted = await bounded.promoteNode({ cluster, node: target, epoch });
        const writePauseMs = Date.now() - paused;
        const notified = await notifyAll(webhooks, {
          type: 'primary-changed',
          cluster,
          database: cluster,
          primary: { node: promoted.node, url: promoted.url },
          previous: { node: current.node, url: current.url },
          epoch,
          reason: request.reason ?? 'switchover',
          kind: 'switchover',
          at: since,
        });
        await bounded.rejoinNode({ cluster, node: current.node });
        await fast.recordFailover({ cluster, kind: 'switchover', rtoSeconds: writePauseMs / 1000 });
        upsertSearchAttributes([{ key: DrOutcome, value: 'success' }]);
        return { cluster, from: current.node, to: target, epoch, lsn: promoted.lsn, writePauseMs, notified };
      },
    );
  } catch (err) {
    upsertSearchAttributes([{ key: DrOutcome, value: 'failed' }]);
    throw explainFailure(err, `switchover${request.to ? ` to ${request.to}` : ''} failed`, 'SwitchoverFailed');
  }
}

/** How long the monitor leaves a node it started a recovery for before it may report it again. */
const RECOVERY_QUIET_MS = 15_000;

/** How long the monitor waits after a failover that failed or was refused before it tries again. */
const FAILOVER_RETRY_PAUSE = '10s';

/**
 * One per cluster, forever: watches (an activity probing every node each probe interval) and
 * starts `failover` when the primary is confirmed failed; continues as new after each failover
 * and every few watch periods, so its history stays short.
 */
export interface MonitorStoodDown {
  /** Why this region's monitor ended: the cluster is run from another region. */
  stoodDown: string;
  /** This region's schedules it paused. */
  paused: string[];
}

/**
 * The main watch, and a sentry in every zone (resolveCluster names their queues): the first to
 * report a failure (it has started the failover) or another region's primary wins, and the others
 * are cancelled. A sentry that ends any other way (its ten minutes are up, its zone is gone) is
 * not waited for: the main watch decides when the round ends.
 */
async function watchWithSentries(
  cluster: string,
  recovering: Array<{ node: string; until: number }>,
  sentries: readonly string[],
): ReturnType<ControlActivities['watchCluster']> {
  if (sentries.length === 0) return watcher.watchCluster({ cluster, recovering });
  const scope = new CancellationScope();
  const never = new Promise<never>(() => undefined);
  try {
    return await scope.run(() =>
      Promise.race([
        watcher.watchCluster({ cluster, recovering }),
        ...sentries.map((q) =>
          sentryOn(q)
            .watchCluster({ cluster, sentry: true })
            .then(
              (seen) => (seen.kind === 'failed' || seen.kind === 'elsewhere' ? seen : never),
              () => never,
            ),
        ),
      ]),
    );
  } finally {
    scope.cancel();
  }
}

export async function monitorCluster(input: MonitorInput = {}): Promise<MonitorStoodDown> {
  const request = inputOrFail(MonitorInputSchema, input, 'monitorCluster');
  const { cluster, sentries } = await fast.resolveCluster({ cluster: request.cluster }).catch((err: unknown) => {
    throw explainFailure(err, 'monitorCluster cannot start', 'MonitorFailed');
  });
  upsertSearchAttributes([
    { key: DrDatabase, value: cluster },
    { key: DrScenario, value: 'monitor' },
  ]);
  // Nodes this run has started (or found) a recovery for, and when: the watch does not report
  // them again for a while. Past that, a node still (or again) in need is reported again; a
  // recovery still running makes starting another one a no-op.
  const recovering = new Map<string, number>();
  for (let round = 0; round < 6; round++) {
    const quiet = [...recovering].map(([node, at]) => ({ node, until: at + RECOVERY_QUIET_MS }));
    const seen = await watchWithSentries(cluster, quiet, sentries);
    if (seen.kind === 'elsewhere') {
      // A newer epoch is run from another region (a region failover while this one was away):
      // this region must not act on a cluster it no longer runs.
      const why = seen.evidence ?? 'the primary is in another region';
      const { paused } = await fast.standDown({ cluster, why });
      upsertSearchAttributes([{ key: DrOutcome, value: 'stood-down' }]);
      return { stoodDown: why, paused };
    }
    if (seen.kind === 'recover') {
      for (const node of seen.nodes ?? []) {
        await startRecovery(cluster, node);
        recovering.set(node, Date.now());
      }
      continue;
    }
    if (seen.kind !== 'failed' || !seen.failedNode) continue;
    // The watch started the failover (or found one running); a failed or refused one (no eligible
    // replica) is in its own history, and the monitor keeps watching after a pause: each attempt
    // opens an epoch, and what refused it (no standby proven) does not change within a probe.
    const ended = seen.failover ? await watcher.awaitFailover(seen.failover) : { ok: false };
    if (!ended.ok) await sleep(FAILOVER_RETRY_PAUSE);
    break;
  }
  // The next run keeps the short workflow task timeout (a new run would get Temporal's 10 s).
  return makeContinueAsNewFunc<typeof monitorCluster>({ workflowTaskTimeout: FAILOVER_TASK_TIMEOUT })({ cluster });
}
