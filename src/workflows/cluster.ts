/**
 * Failover, switchover, recoverNode and monitorCluster (DESIGN rule 7: one writer, fenced).
 *
 * failover: confirm → fence (epoch CAS in the config center; the old primary told to step down if
 * it answers) → elect (the healthy replica with the highest applied LSN among those that hold
 * every acknowledged write) → promote → publish the primary record (CAS on the fenced epoch) →
 * notify clients (signed webhooks, each delivered once) → recoverNode for the failed node as an
 * abandoned child that outlives the failover. Input for the Temporal UI:
 *   { "failedNode": "node1", "reason": "host lost" }
 * monitorCluster ({}) watches and starts failover; switchover ({ "to": "node2" }) moves the
 * primary with no write lost; recoverNode ({ "node": "node1" }) rejoins a node as replica.
 */
import {
  ApplicationFailure,
  ParentClosePolicy,
  WorkflowIdReusePolicy,
  continueAsNew,
  executeChild,
  proxyActivities,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import {
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
import { inputOrFail } from './input';
import { retry } from './proxies';
import { DrDatabase, DrOutcome, DrScenario } from './search-attributes';

/** Failover steps are short calls; a down config center or node is retried quickly. */
const fast = proxyActivities<Activities>({
  startToCloseTimeout: '20s',
  retry: { initialInterval: '200ms', backoffCoefficient: 2, maximumInterval: '5s' },
});
const once = proxyActivities<Activities>({ startToCloseTimeout: '10s', retry: { maximumAttempts: 1 } });
const waiting = proxyActivities<Activities>({
  startToCloseTimeout: '30m',
  heartbeatTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s' },
});
const watcher = proxyActivities<Activities>({
  startToCloseTimeout: '15m',
  heartbeatTimeout: '10s',
  retry: { ...retry, maximumInterval: '5s' },
});
/** Webhooks: retried until delivered (a receiver's 4xx is final). */
const deliveries = proxyActivities<Activities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' },
});

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
  /** First failed probe (or the start) to the new primary published, seconds. */
  rtoSeconds: number;
  notified: Array<{ webhook: number; ok: boolean; detail: string }>;
  recoverWorkflowId: string;
}

function failInput(message: string): never {
  throw ApplicationFailure.create({ type: 'InvalidInput', message, nonRetryable: true });
}

async function notifyAll(
  webhooks: number,
  event: Omit<Parameters<Activities['notifyWebhook']>[0]['event'], 'deliveryId'>,
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
  const t0 = Date.now();
  const mark = () => Date.now();
  const { cluster, webhooks } = await fast.resolveCluster({
    cluster: request.cluster,
    nodes: [{ id: request.failedNode, field: 'failedNode' }],
  });
  upsertSearchAttributes([
    { key: DrDatabase, value: cluster },
    { key: DrScenario, value: 'failover' },
  ]);
  const outcome = (value: string) => upsertSearchAttributes([{ key: DrOutcome, value }]);
  if (workflowInfo().workflowId !== failoverWorkflowId(cluster)) {
    outcome('refused');
    failInput(
      `workflow id: start failover with the workflow id "${failoverWorkflowId(cluster)}" (not "${workflowInfo().workflowId}"), so that two failovers of ${cluster} can never run at once`,
    );
  }

  let t = mark();
  const confirmed = await fast.confirmFailure({ cluster, node: request.failedNode });
  if (confirmed.notPrimary) {
    outcome('refused');
    failInput(`failedNode: ${confirmed.detail}`);
  }
  if (!confirmed.down && !request.force) {
    outcome('refused');
    failInput(
      `failedNode: ${confirmed.detail}; it is healthy, so there is nothing to fail over (pass force: true to move the primary anyway)`,
    );
  }
  const confirm = mark() - t;

  t = mark();
  const { epoch, previous } = await fast.fenceEpoch({
    cluster,
    by: workflowInfo().workflowId + '/' + workflowInfo().runId,
  });
  const down = await once
    .stepDown({ cluster, node: request.failedNode, epoch })
    .catch((err: Error) => ({ answered: false, detail: err.message }));
  const fence = mark() - t;

  t = mark();
  let choice;
  try {
    choice = await fast.electReplica({ cluster, failedNode: request.failedNode, force: request.force });
  } catch (err) {
    outcome('failed');
    throw err;
  }
  const elect = mark() - t;

  t = mark();
  const promoted = await fast.promoteNode({ cluster, node: choice.node, epoch, exclude: request.failedNode });
  const promote = mark() - t;

  t = mark();
  const since = new Date().toISOString();
  await fast.publishPrimary({
    cluster,
    expectedEpoch: previous?.epoch,
    record: { node: promoted.node, url: promoted.url, epoch, since, failover: workflowInfo().workflowId },
  });
  const published = mark();
  const config = published - t;

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

  const recoverId = recoverWorkflowId(cluster, request.failedNode);
  try {
    await startChild(recoverNode, {
      workflowId: recoverId,
      args: [{ cluster, node: request.failedNode }],
      parentClosePolicy: ParentClosePolicy.ABANDON,
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
    });
  } catch (err) {
    // One recovery of that node is already waiting for it: it rejoins it to the new primary.
    if ((err as Error).name !== 'WorkflowExecutionAlreadyStartedError') throw err;
  }

  const from = request.detectedAt ?? t0;
  const rtoSeconds = (published - from) / 1000;
  await fast.recordFailover({ cluster, kind: 'failover', rtoSeconds });
  const { delivered: notified, at: notifiedAt } = await notifying;
  const notify = notifiedAt - t;
  outcome('success');
  return {
    cluster,
    failedNode: request.failedNode,
    newPrimary: promoted.node,
    epoch,
    lsn: promoted.lsn,
    why: choice.why,
    oldPrimaryAnswered: down.answered,
    phases: {
      ...(request.detectedAt ? { detect: t0 - request.detectedAt } : {}),
      confirm,
      fence,
      elect,
      promote,
      config,
      notify,
    },
    rtoSeconds,
    notified,
    recoverWorkflowId: recoverId,
  };
}

export interface RecoverNodeResult {
  cluster: string;
  node: string;
  epoch: number;
  role: string;
  lsn: number;
}

/** Waits for the node to come back, rejoins it as replica, and waits until it is in sync. */
export async function recoverNode(input: RecoverNodeInput): Promise<RecoverNodeResult> {
  const request = inputOrFail(RecoverNodeInputSchema, input, 'recoverNode');
  const { cluster } = await fast.resolveCluster({
    cluster: request.cluster,
    nodes: [{ id: request.node, field: 'node' }],
  });
  upsertSearchAttributes([
    { key: DrDatabase, value: cluster },
    { key: DrScenario, value: 'recover-node' },
  ]);
  await waiting.awaitNode({ cluster, node: request.node });
  const joined = await fast.rejoinNode({ cluster, node: request.node });
  const synced = joined.role === 'replica' ? await waiting.awaitInSync({ cluster, node: request.node }) : { lsn: 0 };
  upsertSearchAttributes([{ key: DrOutcome, value: 'success' }]);
  return { cluster, node: request.node, epoch: joined.epoch, role: joined.role, lsn: synced.lsn };
}

export interface SwitchoverResult {
  cluster: string;
  from: string;
  to: string;
  epoch: number;
  lsn: number;
  /** Milliseconds writes were refused: from the drain to the new primary published. */
  writePauseMs: number;
  notified: FailoverResult['notified'];
}

/** A planned move of the primary: drain, catch up, promote, publish. No acknowledged write is lost. */
export async function switchover(input: SwitchoverInput = {}): Promise<SwitchoverResult> {
  const request = inputOrFail(SwitchoverInputSchema, input, 'switchover');
  const status = await fast.clusterStatus({ cluster: request.cluster });
  const cluster = status.cluster;
  const { webhooks } = await fast.resolveCluster({
    cluster,
    nodes: request.to ? [{ id: request.to, field: 'to' }] : [],
  });
  upsertSearchAttributes([
    { key: DrDatabase, value: cluster },
    { key: DrScenario, value: 'switchover' },
  ]);
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

  const { epoch } = await fast.fenceEpoch({ cluster, by: workflowInfo().workflowId + '/' + workflowInfo().runId });
  const paused = Date.now();
  const drained = await fast.drainPrimary({ cluster, node: current.node, epoch, to: target });
  await fast.awaitCaughtUp({ cluster, node: target, lsn: drained.lsn });
  const promoted = await fast.promoteNode({ cluster, node: target, epoch });
  const since = new Date().toISOString();
  await fast.publishPrimary({
    cluster,
    expectedEpoch: current.epoch,
    record: { node: promoted.node, url: promoted.url, epoch, since, failover: workflowInfo().workflowId },
  });
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
  await fast.rejoinNode({ cluster, node: current.node });
  await fast.recordFailover({ cluster, kind: 'switchover', rtoSeconds: writePauseMs / 1000 });
  upsertSearchAttributes([{ key: DrOutcome, value: 'success' }]);
  return { cluster, from: current.node, to: target, epoch, lsn: promoted.lsn, writePauseMs, notified };
}

/**
 * One per cluster, forever: watches (an activity probing every node each probe interval) and
 * starts `failover` when the primary is confirmed failed; continues as new after each failover
 * and every few watch periods, so its history stays short.
 */
export async function monitorCluster(input: MonitorInput = {}): Promise<void> {
  const request = inputOrFail(MonitorInputSchema, input, 'monitorCluster');
  const { cluster } = await fast.resolveCluster({ cluster: request.cluster });
  upsertSearchAttributes([
    { key: DrDatabase, value: cluster },
    { key: DrScenario, value: 'monitor' },
  ]);
  for (let round = 0; round < 6; round++) {
    const seen = await watcher.watchCluster({ cluster });
    if (seen.kind !== 'failed' || !seen.failedNode) continue;
    try {
      await executeChild(failover, {
        workflowId: failoverWorkflowId(cluster),
        args: [
          {
            cluster,
            failedNode: seen.failedNode,
            reason: 'monitorCluster: primary failed',
            detectedAt: seen.firstFailureAt,
            evidence: seen.evidence,
          },
        ],
        parentClosePolicy: ParentClosePolicy.ABANDON,
        workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
      });
    } catch {
      // A failed or refused failover (no eligible replica, already running) is in its own
      // history; the monitor keeps watching.
    }
    break;
  }
  await continueAsNew<typeof monitorCluster>({ cluster });
}
