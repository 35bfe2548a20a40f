/**
 * Activity options shared by the workflows: one proxy for quick calls on the control queue, and
 * per node a quick one and a long one (heartbeating, for transfers and scans) on the node's queue.
 */
import { proxyActivities, type ActivityOptions } from '@temporalio/workflow';
import type { Activities } from '../activities';

/** Unreachable servers are retried with backoff; the pending activity says what it waits for. */
export const retry: ActivityOptions['retry'] = { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' };

export const control = proxyActivities<Activities>({
  startToCloseTimeout: '5m',
  scheduleToCloseTimeout: '30m',
  retry,
});

/** Calls that must run on the host that owns the node's disk. */
export function onNode(taskQueue: string, options: { giveUpAfterAttempts?: number } = {}) {
  return {
    quick: proxyActivities<Activities>({ taskQueue, startToCloseTimeout: '2m', scheduleToCloseTimeout: '30m', retry }),
    long: proxyActivities<Activities>({
      taskQueue,
      startToCloseTimeout: '2h',
      heartbeatTimeout: '20s',
      scheduleToCloseTimeout: '6h',
      retry: { ...retry, ...(options.giveUpAfterAttempts ? { maximumAttempts: options.giveUpAfterAttempts } : {}) },
    }),
  };
}
