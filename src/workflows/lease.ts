/**
 * Runs a topology change under the cluster's lease (config-center/lease.ts): take it, keep it
 * renewed by a heartbeating activity while the change runs, give it back however the change ends.
 * A lease lost meanwhile (taken over after it expired, or preempted) cancels the change.
 */
import {
  CancellationScope,
  isCancellation,
  proxyActivities,
  proxyLocalActivities,
  workflowInfo,
} from '@temporalio/workflow';
import type { ControlActivities } from '../activities';
import type { LeasePurpose } from '../config-center/lease';
import { localThenVisible } from './proxies';

/** Taking and giving back: a config center that does not answer is retried until it does. */
const leases = proxyActivities<ControlActivities>({
  startToCloseTimeout: '5m',
  heartbeatTimeout: '10s',
  retry: { initialInterval: '200ms', backoffCoefficient: 2, maximumInterval: '5s' },
});
/**
 * A failover takes the lease in the worker that runs it (a local activity): an activity task
 * handed to a worker that froze with its zone would cost the failover a timeout.
 */
const urgentLeases = localThenVisible(
  proxyLocalActivities<ControlActivities>({ startToCloseTimeout: '10s', retry: { maximumAttempts: 1 } }),
  leases,
);
/** The keeper heartbeats every second; a dead worker's keeper is restarted elsewhere within 5 s. */
const keeper = proxyActivities<ControlActivities>({
  startToCloseTimeout: '30d',
  heartbeatTimeout: '5s',
  retry: { initialInterval: '200ms', backoffCoefficient: 2, maximumInterval: '2s' },
});

export interface LeaseOptions {
  cluster: string;
  purpose: LeasePurpose;
  /** Take over a preemptible lease (a drill's). */
  preempt?: boolean;
  /** Hold a lease an automatic failover may take over. */
  preemptible?: boolean;
  /** Wait (up to the configured failoverWait) while another change holds it, instead of refusing. */
  waitForHolder?: boolean;
  /** Run under this holder's lease (an operation its holder started itself): checked, not taken. */
  under?: string;
  /** Take it in this worker (a failover: see urgentLeases). */
  urgent?: boolean;
}

export interface HeldLease {
  holder: string;
  /** The lease taken over, when this change preempted one. */
  preempted?: string;
}

/** This workflow run as a lease holder. */
export function leaseHolder(): string {
  return `${workflowInfo().workflowId}/${workflowInfo().runId}`;
}

export async function withTopologyLease<T>(
  options: LeaseOptions,
  change: (lease: HeldLease) => Promise<T>,
): Promise<T> {
  const { cluster } = options;
  if (options.under) {
    await leases.checkTopologyLease({ cluster, holder: options.under });
    return change({ holder: options.under });
  }
  const holder = leaseHolder();
  const request = {
    cluster,
    holder,
    purpose: options.purpose,
    preempt: options.preempt,
    preemptible: options.preemptible,
    waitForHolder: options.waitForHolder,
  };
  const acquired = await (options.urgent ? urgentLeases : leases).acquireTopologyLease(request);
  const keeping = new CancellationScope();
  const working = new CancellationScope();
  let lost: unknown;
  const kept = keeping.run(() => keeper.keepTopologyLease({ cluster, holder }));
  void kept.catch((err: unknown) => {
    if (isCancellation(err)) return;
    lost = err;
    working.cancel();
  });
  try {
    return await working.run(() =>
      change({ holder, ...(acquired.preempted ? { preempted: acquired.preempted } : {}) }),
    );
  } catch (err) {
    throw lost ?? err;
  } finally {
    keeping.cancel();
    await CancellationScope.nonCancellable(() =>
      leases.releaseTopologyLease({ cluster, holder }).then(
        () => undefined,
        () => undefined,
      ),
    );
  }
}
