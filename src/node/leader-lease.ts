/**
 * The primary's leadership lease (Patroni's rule, docs/node-api.md "Leadership lease"): while
 * primary, the node renews `{ node, epoch, until }` under its cluster's leader key in the config
 * center every ttl/3. A renewal is a compare-and-swap that etcd commits only with a majority of its
 * members, so a node cut off from the majority (its region or zone partitioned away) cannot renew,
 * and it stops acknowledging writes `guard` before the lease it last wrote expires: whoever takes
 * over after `until` (a region failover waits for it) never runs beside a primary that still
 * acknowledges.
 *
 * The failsafe (Patroni's `failsafe_mode`): when the lease cannot be renewed but every replica of
 * the primary has answered within `failsafeMs`, the config center is what is down, not this node's
 * side of a partition (a partition would cut some member off too), and the primary goes on: an
 * etcd outage alone must not stop writes. `failsafeMs` (2 s at most, 1 s at a 3 s TTL) is short
 * enough that a partition ends the failsafe before the lease's `until`: a member cut off at the
 * partition has been silent that long before the last lease written runs out.
 */
import type { ConfigCenter } from '../config-center';
import { errorMessage, type Logger } from './log';

export interface LeaderRecord {
  node: string;
  epoch: number;
  /** ISO 8601: the lease holds until then. */
  until: string;
}

export interface LeaderLeaseOptions {
  center: ConfigCenter;
  key: string;
  self: string;
  ttlMs: number;
  /** Acknowledging stops this long before the lease expires (clock drift, a renewal in flight). */
  guardMs?: number;
  /** The failsafe: every replica answered within this. */
  failsafeMs?: number;
}

export interface LeaseView {
  key: string;
  ttlMs: number;
  /** The node may acknowledge: it holds the lease, or the failsafe applies. */
  open: boolean;
  holds: boolean;
  failsafe: boolean;
  /** ISO 8601: acknowledging stops then unless renewed (absent before the first renewal). */
  validUntil?: string;
  lastRenewal?: string;
  lastError?: string;
}

export class LeaderLease {
  private validUntil = 0;
  private lastRenewal = 0;
  private lastError: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private renewing = false;
  /** The epoch in which the config center named a newer one in the leader key: no failsafe then. */
  private supersededIn: number | undefined;
  private wasOpen = true;
  readonly guardMs: number;
  readonly failsafeMs: number;

  constructor(
    private readonly options: LeaderLeaseOptions,
    /** The node's role and epoch now. */
    private readonly state: () => { role: string; epoch: number },
    /** Every replica link's last answer, ms ago (null: never); empty when the primary has none. */
    private readonly replicaContacts: () => Array<number | null>,
    /** Called when acknowledging may resume (writes waiting for the lease are settled). */
    private readonly onOpen: () => void,
    private readonly log: Logger,
  ) {
    this.guardMs = options.guardMs ?? Math.min(2_000, Math.floor(options.ttlMs / 4));
    // The failsafe must end before the lease would have: the last renewal was at most ttl/3 before
    // the partition, so the lease runs at least 2/3 ttl past it; a replica's last answer is no
    // later than the partition, so the failsafe ends within failsafeMs of it. Keep a margin.
    this.failsafeMs =
      options.failsafeMs ?? Math.max(300, Math.min(2_000, Math.floor((2 * options.ttlMs) / 3) - this.guardMs - 250));
  }

  start(): void {
    const tick = (): void => {
      void this.renew();
      this.timer = setTimeout(tick, Math.max(100, Math.floor(this.options.ttlMs / 3)));
      this.timer.unref();
    };
    tick();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }

  /** Whether the primary may acknowledge now. */
  open(now = Date.now()): boolean {
    const open = this.holds(now) || this.failsafe();
    if (open !== this.wasOpen) {
      this.wasOpen = open;
      this.log(open ? 'leader_lease_open' : 'leader_lease_lost', {
        validUntil: new Date(this.validUntil).toISOString(),
        failsafe: open && !this.holds(now),
        ...(this.lastError ? { error: this.lastError } : {}),
      });
    }
    return open;
  }

  private holds(now = Date.now()): boolean {
    return now < this.validUntil - this.guardMs;
  }

  private failsafe(): boolean {
    // The failsafe is for a config center that does not answer; one that answered with a newer
    // epoch (a region failover claimed the key) has superseded this primary.
    if (this.supersededIn !== undefined && this.supersededIn === this.state().epoch) return false;
    const contacts = this.replicaContacts();
    return contacts.length > 0 && contacts.every((ms) => ms !== null && ms < this.failsafeMs);
  }

  view(): LeaseView {
    const now = Date.now();
    return {
      key: this.options.key,
      ttlMs: this.options.ttlMs,
      open: this.open(now),
      holds: this.holds(now),
      failsafe: !this.holds(now) && this.failsafe(),
      ...(this.validUntil ? { validUntil: new Date(this.validUntil - this.guardMs).toISOString() } : {}),
      ...(this.lastRenewal ? { lastRenewal: new Date(this.lastRenewal).toISOString() } : {}),
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }

  /**
   * One renewal while primary. The lease counts from before the request went out: a renewal that
   * took long has that much less left. A record of a newer epoch (another primary took over) is
   * never overwritten.
   */
  async renew(): Promise<void> {
    const { role, epoch } = this.state();
    if (role !== 'primary' || this.renewing) return;
    this.renewing = true;
    const started = Date.now();
    try {
      const { center, key, self, ttlMs } = this.options;
      const current = await center.get(key);
      const held = current.value as LeaderRecord | undefined;
      if (held && held.node !== self && held.epoch > epoch) {
        this.lastError = `the leader key names ${held.node} at epoch ${held.epoch}, newer than this node's ${epoch}`;
        this.supersededIn = epoch;
        return;
      }
      const next: LeaderRecord = { node: self, epoch, until: new Date(started + ttlMs).toISOString() };
      const result = await center.compareAndSwap(key, current.revision, next);
      if (!result.ok) {
        this.lastError = 'the leader key changed during the renewal';
        return;
      }
      const reopened = !this.holds();
      this.validUntil = started + ttlMs;
      this.lastRenewal = started;
      this.lastError = undefined;
      if (reopened) this.onOpen();
    } catch (err) {
      this.lastError = errorMessage(err);
    } finally {
      this.renewing = false;
    }
  }
}
