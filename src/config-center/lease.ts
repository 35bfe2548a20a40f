/**
 * The topology lease: one change of a cluster's topology at a time (failover, switchover, a
 * restore or rebuild of one of its nodes, a production drill). It lives in the config center,
 * not only in a workflow id, because a standby region's Temporal cannot see the other region's
 * workflows, while both see the config center's majority.
 *
 * The lease is a record under /services/<cluster>/lease written by compare-and-swap: who holds it
 * (a workflow id and run), for what, and until when. Its holder renews it while it works; a holder
 * that dies stops renewing and the lease expires, so the next operation proceeds. Expiry is judged
 * on the clocks of the machines that read the record: they must agree to well within the TTL
 * (NTP keeps them within milliseconds; the default TTL is 15 s).
 *
 * A released lease stays in the key with `releasedAt`, so an operator can see who held it last.
 * A drill holds a preemptible lease: an automatic failover of a real incident takes it over,
 * recording whom it preempted, and the drill learns of it at its next renewal.
 */
import { z } from 'zod';
import type { ConfigCenter, Versioned } from './center';

export const LEASE_PURPOSES = [
  'failover',
  'switchover',
  'restore',
  'rejoin',
  'rebuild',
  'region-failover',
  'region-failback',
  'drill',
] as const;
export type LeasePurpose = (typeof LEASE_PURPOSES)[number];

export const TopologyLeaseSchema = z.object({
  /** Who holds it: "<workflow id>/<run id>" for a workflow. */
  holder: z.string().min(1),
  purpose: z.enum(LEASE_PURPOSES),
  acquiredAt: z.string(),
  renewedAt: z.string(),
  expiresAt: z.string(),
  /** An automatic failover may take it over (drills hold such leases). */
  preemptible: z.boolean(),
  releasedAt: z.string().optional(),
  /** The holder this one took the lease over from (an automatic failover preempting a drill). */
  preempted: z.string().optional(),
});
export type TopologyLease = z.infer<typeof TopologyLeaseSchema>;

export const leaseKey = (cluster: string) => `/services/${cluster}/lease`;

export interface LeaseRequest {
  holder: string;
  purpose: LeasePurpose;
  ttlMs: number;
  /** Take over a preemptible lease (an automatic failover does). */
  preempt?: boolean;
  /** Hold a lease others may take over (drills). */
  preemptible?: boolean;
}

/** Whether a lease is held by someone at `now`: not released and not expired. */
export function isLive(lease: TopologyLease | undefined, now: number): lease is TopologyLease {
  return !!lease && !lease.releasedAt && Date.parse(lease.expiresAt) > now;
}

/** "switchover (workflow switchover-kimiclaw-…/run) since …, until …": names the holder for an operator. */
export function describeLease(lease: TopologyLease): string {
  return `${lease.purpose} held by ${lease.holder} since ${lease.acquiredAt} (renewed ${lease.renewedAt}, expires ${lease.expiresAt}${lease.preemptible ? ', preemptible' : ''})`;
}

export type LeaseDecision =
  | { kind: 'take'; lease: TopologyLease }
  | { kind: 'renew'; lease: TopologyLease }
  | { kind: 'preempt'; lease: TopologyLease; preempted: TopologyLease }
  | { kind: 'refuse'; holder: TopologyLease };

/** What an acquire does, given the stored lease: pure, so every case is unit-tested. */
export function decideAcquire(current: TopologyLease | undefined, request: LeaseRequest, now: number): LeaseDecision {
  const at = new Date(now).toISOString();
  const fresh: TopologyLease = {
    holder: request.holder,
    purpose: request.purpose,
    acquiredAt: at,
    renewedAt: at,
    expiresAt: new Date(now + request.ttlMs).toISOString(),
    preemptible: request.preemptible ?? false,
  };
  if (!isLive(current, now)) return { kind: 'take', lease: fresh };
  if (current.holder === request.holder) {
    // A retried acquire of the same holder: the same lease, renewed.
    return { kind: 'renew', lease: { ...current, renewedAt: at, expiresAt: fresh.expiresAt } };
  }
  if (request.preempt && current.preemptible) {
    return { kind: 'preempt', lease: { ...fresh, preempted: current.holder }, preempted: current };
  }
  return { kind: 'refuse', holder: current };
}

export type RenewDecision =
  | { kind: 'renew'; lease: TopologyLease }
  /** The holder itself gave it back: nothing more to keep. */
  | { kind: 'released'; at: string }
  | { kind: 'lost'; reason: string };

/**
 * A renewal succeeds while the record still names the holder and was not released, even just
 * after it expired: nobody else took it meanwhile, so nothing happened under another holder.
 */
export function decideRenew(
  current: TopologyLease | undefined,
  holder: string,
  ttlMs: number,
  now: number,
): RenewDecision {
  if (!current) return { kind: 'lost', reason: 'the lease record is gone' };
  if (current.holder !== holder) {
    const how = current.preempted === holder ? 'preempted: the lease is now' : 'the lease is now';
    return { kind: 'lost', reason: `${how} ${describeLease(current)}` };
  }
  if (current.releasedAt) return { kind: 'released', at: current.releasedAt };
  const at = new Date(now).toISOString();
  return { kind: 'renew', lease: { ...current, renewedAt: at, expiresAt: new Date(now + ttlMs).toISOString() } };
}

export function parseLease(value: unknown): TopologyLease | undefined {
  if (value === undefined) return undefined;
  const parsed = TopologyLeaseSchema.safeParse(value);
  // A record this version cannot read is treated as held until it expires by its own field.
  if (!parsed.success) {
    const expiresAt = (value as { expiresAt?: unknown } | null)?.expiresAt;
    return {
      holder: `an unreadable lease record (${parsed.error.issues.map((i) => i.path.join('.')).join(', ')})`,
      purpose: 'failover',
      acquiredAt: '?',
      renewedAt: '?',
      expiresAt: typeof expiresAt === 'string' ? expiresAt : new Date(8.64e15).toISOString(),
      preemptible: false,
    };
  }
  return parsed.data;
}

export type AcquireResult =
  { ok: true; lease: TopologyLease; preempted?: TopologyLease } | { ok: false; holder: TopologyLease };

const MAX_CAS_ATTEMPTS = 10;

/** Reads, decides, and writes by compare-and-swap, judging again whenever someone wrote between. */
async function casLoop<T>(
  center: ConfigCenter,
  key: string,
  step: (current: TopologyLease | undefined) => { write?: TopologyLease; result: T },
): Promise<T> {
  let state: Versioned<unknown> = await center.get(key);
  for (let attempt = 1; attempt <= MAX_CAS_ATTEMPTS; attempt++) {
    const { write, result } = step(parseLease(state.value));
    if (!write) return result;
    const swapped = await center.compareAndSwap(key, state.revision, write);
    if (swapped.ok) return result;
    state = swapped.current;
  }
  throw new Error(`the lease ${key} changed under each of ${MAX_CAS_ATTEMPTS} attempts to write it`);
}

export function acquireLease(
  center: ConfigCenter,
  cluster: string,
  request: LeaseRequest,
  now: () => number = Date.now,
): Promise<AcquireResult> {
  return casLoop<AcquireResult>(center, leaseKey(cluster), (current) => {
    const decision = decideAcquire(current, request, now());
    switch (decision.kind) {
      case 'refuse':
        return { result: { ok: false, holder: decision.holder } };
      case 'preempt':
        return {
          write: decision.lease,
          result: { ok: true, lease: decision.lease, preempted: decision.preempted },
        };
      default:
        return { write: decision.lease, result: { ok: true, lease: decision.lease } };
    }
  });
}

export function renewLease(
  center: ConfigCenter,
  cluster: string,
  holder: string,
  ttlMs: number,
  now: () => number = Date.now,
): Promise<RenewDecision> {
  return casLoop<RenewDecision>(center, leaseKey(cluster), (current) => {
    const decision = decideRenew(current, holder, ttlMs, now());
    return decision.kind === 'renew' ? { write: decision.lease, result: decision } : { result: decision };
  });
}

/** Releases the lease if `holder` still has it; idempotent. */
export function releaseLease(
  center: ConfigCenter,
  cluster: string,
  holder: string,
  now: () => number = Date.now,
): Promise<boolean> {
  return casLoop<boolean>(center, leaseKey(cluster), (current) => {
    if (!current || current.holder !== holder || current.releasedAt) return { result: false };
    const at = new Date(now()).toISOString();
    return { write: { ...current, releasedAt: at, expiresAt: at }, result: true };
  });
}

/** The lease as stored, for status pages; undefined when none was ever taken. */
export async function readLease(center: ConfigCenter, cluster: string): Promise<TopologyLease | undefined> {
  return parseLease((await center.get(leaseKey(cluster))).value);
}
