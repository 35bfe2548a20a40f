/**
 * Activities of the topology lease (config-center/lease.ts): take it, keep it while the
 * operation runs, give it back. They run on the control queue: the config center is reached
 * over the network.
 */
import { CancelledFailure, Context } from '@temporalio/activity';
import type { Config } from '../config';
import { type ConfigCenter, openConfigCenter } from '../config-center';
import {
  type LeasePurpose,
  type TopologyLease,
  acquireLease,
  describeLease,
  isLive,
  readLease,
  releaseLease,
  renewLease,
} from '../config-center/lease';
import { LeaseLost, TopologyBusy, Unavailable } from '../errors';

export interface AcquireLeaseInput {
  cluster: string;
  holder: string;
  purpose: LeasePurpose;
  /** Take over a preemptible lease (a drill's): an automatic failover does. */
  preempt?: boolean;
  preemptible?: boolean;
  /** Wait up to cluster.lease.failoverWait for a held lease (heartbeating who holds it); else refuse at once. */
  waitForHolder?: boolean;
}

export interface AcquiredLease {
  lease: TopologyLease;
  ttlMs: number;
  /** The lease this one took over, described for the result and the log. */
  preempted?: string;
}

const POLL_MS = 500;

function busy(cluster: string, purpose: LeasePurpose, holder: TopologyLease, waitedMs: number): TopologyBusy {
  const waited = waitedMs ? ` after waiting ${Math.round(waitedMs / 1000)} s` : '';
  return new TopologyBusy(
    `cluster ${cluster}: another topology change is in progress, ${describeLease(holder)}; ` +
      `this ${purpose} was refused${waited} and changed nothing — retry once it has finished`,
  );
}

export function createLeaseActivities({ config }: { config: Config }) {
  let center: ConfigCenter | undefined;
  const cc = () => (center ??= openConfigCenter(config.cluster.configCenter));
  const ttlMs = config.cluster.lease.ttl;

  async function acquireTopologyLease(input: AcquireLeaseInput): Promise<AcquiredLease> {
    const waitMs = input.waitForHolder ? config.cluster.lease.failoverWait : 0;
    const deadline = Date.now() + waitMs;
    for (;;) {
      const result = await acquireLease(cc(), input.cluster, {
        holder: input.holder,
        purpose: input.purpose,
        preempt: input.preempt,
        preemptible: input.preemptible,
        ttlMs,
      });
      if (result.ok) {
        return {
          lease: result.lease,
          ttlMs,
          ...(result.preempted ? { preempted: describeLease(result.preempted) } : {}),
        };
      }
      if (Date.now() + POLL_MS > deadline) throw busy(input.cluster, input.purpose, result.holder, waitMs);
      Context.current().heartbeat({ waitingFor: describeLease(result.holder) });
      await Context.current().sleep(POLL_MS);
    }
  }

  /**
   * Renews the lease every ttl/3 until cancelled (the operation finished). Fails with LeaseLost
   * when someone else holds it now, so the operation stops; a config center that does not answer
   * is retried until it does or the lease would have expired.
   */
  async function keepTopologyLease(input: {
    cluster: string;
    holder: string;
    /** A preemptible holder (a drill) expects to lose it: answer why instead of failing. */
    answerLoss?: boolean;
  }): Promise<{ lost?: string }> {
    const ctx = Context.current();
    let renewedAt = Date.now();
    const beat = setInterval(() => ctx.heartbeat({ renewedAt }), 1_000);
    try {
      for (;;) {
        await ctx.sleep(Math.max(200, ttlMs / 3));
        try {
          const result = await renewLease(cc(), input.cluster, input.holder, ttlMs);
          // Released by its holder: the change ended and the workflow is cancelling this keeper.
          if (result.kind === 'released') return {};
          if (result.kind === 'lost') {
            const why = `cluster ${input.cluster}: ${result.reason}`;
            if (input.answerLoss) return { lost: why };
            throw new LeaseLost(why);
          }
          renewedAt = Date.now();
        } catch (err) {
          if (!(err instanceof Unavailable)) throw err;
          if (Date.now() - renewedAt > ttlMs) {
            throw new LeaseLost(
              `cluster ${input.cluster}: the lease of ${input.holder} could not be renewed for ${Math.round(ttlMs / 1000)} s: ${err.message}`,
            );
          }
        }
      }
    } catch (err) {
      if (err instanceof CancelledFailure) return {};
      throw err;
    } finally {
      clearInterval(beat);
    }
  }

  /** Refuses at once, naming the holder, when another change holds the lease now (read only). */
  async function refuseIfLeased(input: { cluster: string; purpose: LeasePurpose }): Promise<void> {
    const lease = await readLease(cc(), input.cluster);
    if (isLive(lease, Date.now())) throw busy(input.cluster, input.purpose, lease, 0);
  }

  async function releaseTopologyLease(input: { cluster: string; holder: string }): Promise<{ released: boolean }> {
    return { released: await releaseLease(cc(), input.cluster, input.holder) };
  }

  /** Fails unless `holder` holds the cluster's lease now: a child running under its parent's lease. */
  async function checkTopologyLease(input: { cluster: string; holder: string }): Promise<TopologyLease> {
    const lease = await readLease(cc(), input.cluster);
    if (!lease || lease.holder !== input.holder || lease.releasedAt || Date.parse(lease.expiresAt) <= Date.now()) {
      throw new LeaseLost(
        `cluster ${input.cluster}: this operation runs under the lease of ${input.holder}, which does not hold it (${lease ? describeLease(lease) : 'no lease recorded'})`,
      );
    }
    return lease;
  }

  return { acquireTopologyLease, keepTopologyLease, releaseTopologyLease, checkTopologyLease, refuseIfLeased };
}
