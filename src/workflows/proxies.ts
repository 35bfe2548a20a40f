/**
 * Activity options shared by the workflows: one proxy for quick calls on the control queue, per
 * node a quick one and a long one (heartbeating, for transfers and scans) on the node's queue,
 * and one for a tier's catalog on the queue that reaches it. Each is typed by the activity set its
 * queue serves: node work asked of the control queue does not compile.
 */
import { proxyActivities, type ActivityOptions } from '@temporalio/workflow';
import type { CatalogActivities, ControlActivities, NodeActivities } from '../activities';
import { applicationCause } from './failure';

/** Unreachable servers are retried with backoff; the pending activity says what it waits for. */
export const retry: ActivityOptions['retry'] = { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' };

export const control = proxyActivities<ControlActivities>({
  startToCloseTimeout: '5m',
  scheduleToCloseTimeout: '30m',
  retry,
});

/**
 * Calls to one node while a topology change holds the lease: a node that died meanwhile must not
 * hold the lease forever, so these give up after ~30 s and the change fails, naming the node.
 */
export const bounded = proxyActivities<ControlActivities>({
  startToCloseTimeout: '10s',
  scheduleToCloseTimeout: '30s',
  retry: { initialInterval: '200ms', backoffCoefficient: 2, maximumInterval: '2s' },
});

/** Calls that must run on the host that owns the node's disk. */
export function onNode(taskQueue: string, options: { giveUpAfterAttempts?: number } = {}) {
  return {
    quick: proxyActivities<NodeActivities>({
      taskQueue,
      startToCloseTimeout: '2m',
      scheduleToCloseTimeout: '30m',
      retry,
    }),
    long: proxyActivities<NodeActivities>({
      taskQueue,
      startToCloseTimeout: '2h',
      heartbeatTimeout: '20s',
      scheduleToCloseTimeout: '6h',
      retry: { ...retry, ...(options.giveUpAfterAttempts ? { maximumAttempts: options.giveUpAfterAttempts } : {}) },
    }),
  };
}

/**
 * A tier's catalog on the queue its CatalogLocation names: the control queue for the bucket, the
 * node's queue for its L1. `untilDone` waits for a host that is down however long it takes, for
 * records that must reach every catalog (backups marked bad after a rewind).
 */
export function catalogAt(taskQueue: string, options: { untilDone?: boolean } = {}) {
  return proxyActivities<CatalogActivities>({
    taskQueue,
    startToCloseTimeout: '5m',
    ...(options.untilDone ? {} : { scheduleToCloseTimeout: '30m' }),
    retry,
  });
}

/**
 * Urgent calls (a failover's steps, its lease): one attempt in this worker (`local`, a local
 * activity proxy with maximumAttempts 1), and when it fails, the same call through `visible`, an
 * ordinary activity proxy retried until it succeeds, whose attempts and last failure show in the
 * workflow's pending activities. A worker frozen with its zone may hold polls and take tasks it
 * never answers; a local attempt cannot be handed to it. A final failure is not tried again.
 */
export function localThenVisible<T extends object>(local: T, visible: T): T {
  return new Proxy({} as T, {
    get(_target, name) {
      return async (...args: unknown[]) => {
        const call = (proxy: T) => (proxy[name as keyof T] as (...a: unknown[]) => Promise<unknown>)(...args);
        try {
          return await call(local);
        } catch (err) {
          if (applicationCause(err)?.nonRetryable) throw err;
          return call(visible);
        }
      };
    },
  });
}
