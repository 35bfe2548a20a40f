/**
 * The drill's activity proxies (shared by the drill on the cluster and the one on a private
 * stack), each with the timeouts and retries its job needs.
 */
import { ActivityCancellationType, ApplicationFailure, proxyActivities } from '@temporalio/workflow';
import type { ControlActivities, NodeActivities } from '../activities';
import type { DrillReport } from '../drill/report';

export const control = proxyActivities<ControlActivities>({
  startToCloseTimeout: '2m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 5 },
});
export const onHost = (taskQueue: string) =>
  proxyActivities<NodeActivities>({
    taskQueue,
    startToCloseTimeout: '30m',
    // They heartbeat at least every second: a lost host worker's activity moves on within 10 s.
    heartbeatTimeout: '10s',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 3 },
  });
/** Taking and giving back the topology lease (a busy lease is refused at once, not retried). */
export const leases = proxyActivities<ControlActivities>({
  startToCloseTimeout: '1m',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '5s', maximumAttempts: 5 },
});
/** The keeper heartbeats every second; a lost worker's keeper is restarted elsewhere within 5 s. */
export const keeper = proxyActivities<ControlActivities>({
  startToCloseTimeout: '30d',
  heartbeatTimeout: '5s',
  retry: { initialInterval: '200ms', backoffCoefficient: 2, maximumInterval: '2s' },
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
});
/** Taking the lease back while holding it: a cancelled hold waits for an acquire in flight. */
export const retake = proxyActivities<ControlActivities>({
  startToCloseTimeout: '1m',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '5s', maximumAttempts: 5 },
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
});
/** A fault is injected once: a retried kill could hit the node after it came back. */
export const injectOn = (taskQueue: string) =>
  proxyActivities<NodeActivities>({ taskQueue, startToCloseTimeout: '30s', retry: { maximumAttempts: 1 } });

/**
 * The private stack's steps on its host: starting it moves the restored database into it (not
 * repeatable), running the scenarios on it is picked up again after a lost worker.
 */
export const stackOn = (taskQueue: string, attempts: number) =>
  proxyActivities<NodeActivities>({
    taskQueue,
    startToCloseTimeout: '2h',
    heartbeatTimeout: '30s',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: attempts },
  });

/** A failure's message with its causes' ("Activity task failed: <what the activity said>"). */
export function failureText(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err; e instanceof Error && parts.length < 5; e = e.cause) if (e.message) parts.push(e.message);
  return parts.join(': ') || String(err);
}

/**
 * A fault the private stack's process injects (orchestrator-down, zone-failure): asked again when
 * the worker was stopped before it answered (it then answers the fault already injected, injecting
 * nothing more).
 */
export const stackFaultOn = (taskQueue: string) =>
  proxyActivities<NodeActivities>({
    taskQueue,
    startToCloseTimeout: '1m',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '5s', maximumAttempts: 20 },
  });

/** A failed drill's failure: why (the drill's own error, each failed scenario's reasons), with the report in its details. */
export function drillFailed(report: DrillReport): ApplicationFailure {
  const why = [
    ...(report.error ? [report.error] : []),
    ...report.scenarios.filter((s) => !s.verdict.passed).map((s) => `${s.scenario}: ${s.verdict.reasons.join('; ')}`),
  ].join(' | ');
  return ApplicationFailure.create({
    type: 'DrillFailed',
    nonRetryable: true,
    message: `drill ${report.id} failed: ${why}`,
    details: [report],
  });
}
