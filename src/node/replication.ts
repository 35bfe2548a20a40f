/**
 * L0 replication and epoch fencing (docs/architecture.md, rule 7) for the reference node.
 *
 * The primary commits each batch locally, sends it to its replicas (POST /replicate), and
 * acknowledges the client only once a synchronous replica has applied it: an acknowledged write
 * is on two disks (RPO 0). Asynchronous replicas get the same stream without holding writes back.
 * One sender per replica sends everything it has not yet applied, so concurrent writes share one
 * round trip, and a replica that was away catches up by LSN from the primary's own table before it
 * counts as in sync again.
 *
 * Every message carries the sender's epoch. A replica refuses an epoch older than its own; a
 * primary that hears of a newer epoch fences itself (refuses writes, fails the writes waiting for
 * acknowledgement): a returning old primary cannot acknowledge a write that is then lost. When a
 * replica first hears from the primary of a newer epoch it discards any tail it holds beyond the
 * LSN where that epoch began: no client was told those writes succeeded.
 *
 * Without an in-sync synchronous replica, writes wait (they are committed on the primary but not
 * acknowledged) until the replica is back or the control plane allows degraded writes
 * (POST /replication { allowDegraded: true }), which it records in the config center first, so a
 * later failover knows the replica may lack acknowledged writes. See docs/node-api.md.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type Fingerprint, fingerprintDifferences } from '../duckdb/fingerprint';
import type { LogEvent } from '../duckdb/replay';
import { fingerprintFile, recordedFingerprintFile } from '../duckdb/verify';
import type { Logger } from './log';
import { Mutex } from './mutex';
import { errorMessage } from './log';
import { type EpochStart, type ReplicationState, sameHistory } from './session';
import type { CommittedBatch, EventStore } from './store';
import { NotPrimaryError, StaleEpochError } from './store-errors';

export { StaleEpochError };

export type ReplicaMode = 'sync' | 'async';

export interface ReplicaSpec {
  id: string;
  url: string;
  mode: ReplicaMode;
}

/** in-sync: applied everything up to the head at its last answer and answering since. */
export type LinkState = 'connecting' | 'catching-up' | 'in-sync' | 'down' | 'diverged';

export interface ReplicaStatus extends ReplicaSpec {
  state: LinkState;
  appliedLsn: number | null;
  lagLsn: number | null;
  /** Milliseconds since the replica last answered. */
  lastAckMsAgo: number | null;
  lastError: string | null;
  /** Snapshots sent to it because it was too far behind for the log. */
  bootstraps: number;
}

/** What POST /replicate carries. */
export interface ReplicateRequest {
  epoch: number;
  primary: { id: string; url: string };
  history: EpochStart[];
  events: LogEvent[];
  /** The primary's acknowledged LSN when it sent this (a primary that does not say: unknown). */
  ackedLsn?: number;
  /**
   * The events follow this LSN in the primary's log: LSNs between it and the first event are holes
   * of the history (batches a restore left out), not a gap. Absent: they must follow on directly.
   */
  afterLsn?: number;
}

/** Writes committed on the primary that no synchronous replica confirmed in time. */
export class NotReplicatedError extends Error {
  constructor(
    readonly lsn: number,
    readonly waitedMs: number,
  ) {
    super(
      `LSN ${lsn} is committed on the primary but no synchronous replica confirmed it within ${waitedMs} ms; ` +
        'it is not acknowledged (it may or may not survive a failover)',
    );
    this.name = 'NotReplicatedError';
  }
}

export interface ReplicationOptions {
  self: { id: string; url: string };
  /** Idle primary → replica heartbeat; replicas report how long ago they heard from it. */
  heartbeatMs?: number;
  /** Per-request timeout of primary → replica calls. */
  requestTimeoutMs?: number;
  /** How long a write waits for a synchronous replica before it is answered 503. */
  syncTimeoutMs?: number;
  /** Most events per POST /replicate. */
  maxBatchEvents?: number;
  /** A replica further behind than this many LSNs is sent a snapshot instead of the log. */
  bootstrapLagLsn?: number;
  /** The Authorization header of calls to replicas, asked at each call (tokens may be reloaded). */
  authorization?: () => Record<string, string>;
}

/** What the primary sends beside a snapshot (header x-kimiclaw-snapshot, JSON). */
export interface SnapshotMeta {
  epoch: number;
  primary: { id: string; url: string };
  history: EpochStart[];
  lsn: number;
  fingerprint: Fingerprint;
  /** The primary's acknowledged LSN when it took the snapshot. */
  ackedLsn?: number;
}

export const SNAPSHOT_HEADER = 'x-kimiclaw-snapshot';

interface Waiter {
  lsn: number;
  resolve: () => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** Keeps the newest committed batches so in-sync replicas are fed from memory, not the table. */
const BUFFER_EVENTS = 50_000;

export class Replication {
  private links = new Map<string, ReplicaLink>();
  private waiters: Waiter[] = [];
  private buffer: CommittedBatch[] = [];
  private bufferedEvents = 0;
  private wake: Array<() => void> = [];
  private stopped = false;
  /**
   * The highest LSN known to be acknowledged: computed from the links while primary; while not,
   * what the primary last said (replica) or what was known when this node stopped being primary
   * (fenced). Monotonic within one history; a truncation or a replaced file lowers it.
   */
  private ackedThrough: number;
  allowDegraded = false;
  /**
   * Whether the primary may acknowledge now (the leadership lease, leader-lease.ts); absent: always.
   * Closed, writes wait as they do for a synchronous replica, and the acknowledged LSN stands still.
   */
  leaseGate: (() => boolean) | undefined;
  /** Called after a promotion (the lease is renewed at once, not at its next tick). */
  onPromoted: (() => void) | undefined;
  /** The replica's view of its primary: who, which epoch, when it last heard from it. */
  primaryContact: { id: string; url: string; epoch: number; at: number } | undefined;
  /**
   * One message from a primary at a time. Two primaries of different epochs may both reach this
   * node (an old one restarting before it hears of the new one): deciding what to cut and applying
   * the batch must not interleave with the other sender's, or the older epoch's batch could land
   * at an LSN the newer epoch already decided, and the newer one's copy would be skipped.
   */
  private readonly receiving = new Mutex();
  readonly heartbeatMs: number;
  readonly requestTimeoutMs: number;
  readonly syncTimeoutMs: number;
  readonly maxBatchEvents: number;
  readonly bootstrapLagLsn: number;
  readonly authorization: () => Record<string, string>;

  constructor(
    readonly store: EventStore,
    /** This node as replicas see it; url is set once the server listens. */
    readonly self: { id: string; url: string },
    private readonly log: Logger,
    options: Omit<ReplicationOptions, 'self'> = {},
  ) {
    this.heartbeatMs = options.heartbeatMs ?? 200;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 2_000;
    this.syncTimeoutMs = options.syncTimeoutMs ?? 30_000;
    this.maxBatchEvents = options.maxBatchEvents ?? 20_000;
    this.bootstrapLagLsn = options.bootstrapLagLsn ?? 100_000;
    this.authorization = options.authorization ?? (() => ({}));
    this.ackedThrough = store.recordedAckedLsn;
    store.onCommit = (batch) => this.committed(batch);
    store.ackedLsn = () => this.acknowledgedLsn;
    store.onReopened = () => this.reopenedFenced();
  }

  get state(): ReplicationState {
    return this.store.state;
  }

  /** Appends on the primary and resolves once the write is acknowledged (see the file comment). */
  async append(events: Parameters<EventStore['append']>[0], clientEpoch?: number) {
    this.checkClientEpoch(clientEpoch);
    const result = await this.store.append(events);
    await this.acknowledged(result.lsn);
    return result;
  }

  /** A client that read a newer epoch from the config center is talking to a stale primary. */
  checkClientEpoch(clientEpoch: number | undefined): void {
    const { epoch } = this.store.state;
    if (clientEpoch === undefined) return;
    if (clientEpoch > epoch) {
      throw new StaleEpochError(
        epoch,
        clientEpoch,
        'this node',
        `the write carries epoch ${clientEpoch}, newer than this node's epoch ${epoch}: this node is no longer the primary; read the primary from the config center`,
      );
    }
    if (clientEpoch < epoch) throw new StaleEpochError(clientEpoch, epoch, 'the write');
  }

  /** The replicas the primary sends to; links to replicas no longer listed stop. */
  configure(replicas: readonly ReplicaSpec[]): void {
    const wanted = new Map(replicas.filter((r) => r.id !== this.self.id).map((r) => [r.id, r]));
    for (const [id, link] of this.links) {
      const spec = wanted.get(id);
      if (!spec || spec.url !== link.spec.url) {
        link.stop();
        this.links.delete(id);
      }
    }
    for (const [id, spec] of wanted) {
      const existing = this.links.get(id);
      if (existing) existing.spec.mode = spec.mode;
      else if (this.store.state.role === 'primary') this.startLink(spec);
    }
    this.settle();
  }

  /** How long ago each replica last answered (null: never), without building the full status. */
  replicaAnswerAges(): Array<number | null> {
    return [...this.links.values()].map((l) => l.answerAgeMs());
  }

  get replicas(): ReplicaSpec[] {
    return [...this.links.values()].map((l) => ({ ...l.spec }));
  }

  status(): {
    role: string;
    epoch: number;
    history: EpochStart[];
    lsn: number;
    allowDegraded: boolean;
    syncState: 'standalone' | 'in-sync' | 'degraded' | 'waiting';
    replicas: ReplicaStatus[];
    primary?: { id: string; url: string; epoch: number; lastContactMsAgo: number };
  } {
    const { role, epoch, history } = this.store.state;
    const sync = [...this.links.values()].filter((l) => l.spec.mode === 'sync');
    const syncState =
      role !== 'primary' || sync.length === 0
        ? 'standalone'
        : sync.some((l) => l.state === 'in-sync')
          ? 'in-sync'
          : this.allowDegraded
            ? 'degraded'
            : 'waiting';
    return {
      role,
      epoch,
      history,
      lsn: this.store.lsn,
      allowDegraded: this.allowDegraded,
      syncState,
      replicas: [...this.links.values()].map((l) => l.status(this.store.lsn)),
      ...(this.primaryContact
        ? {
            primary: {
              id: this.primaryContact.id,
              url: this.primaryContact.url,
              epoch: this.primaryContact.epoch,
              lastContactMsAgo: Date.now() - this.primaryContact.at,
            },
          }
        : {}),
    };
  }

  /**
   * Makes this node the primary of `epoch`, which must be newer than its own. The epoch begins at
   * startLsn (default: this node's LSN), never beyond it: a restore that forks the history names
   * the LSN it restored to, and every replica cuts its tail there when it hears of the epoch.
   */
  async promote(epoch: number, replicas: readonly ReplicaSpec[], allowDegraded: boolean, startLsn?: number) {
    const state = this.store.state;
    if (state.role === 'primary' && state.epoch === epoch) {
      // A retried promote (its answer was lost): same outcome.
      this.allowDegraded = allowDegraded;
      this.configure(replicas);
      return { epoch, lsn: this.store.lsn, history: state.history };
    }
    if (epoch <= state.epoch) throw new StaleEpochError(epoch, state.epoch, 'the promotion');
    // A fenced node was a primary that stepped down: its tail may hold writes nobody else has, so
    // only a promotion that names where the new epoch begins (a restore, which decided the
    // history) may make it primary again.
    if (state.role === 'fenced' && startLsn === undefined) {
      throw new NotPrimaryError(state);
    }
    // A damaged, unwritable or empty node must never become the primary.
    this.store.assertWritable();
    if (startLsn !== undefined && startLsn > this.store.lsn) {
      throw new RangeError(`startLsn ${startLsn} is beyond this node's LSN ${this.store.lsn}`);
    }
    const history = [...state.history.filter((h) => h.epoch < epoch), { epoch, startLsn: startLsn ?? this.store.lsn }];
    await this.store.setReplicationState({ role: 'primary', epoch, history });
    // Batches buffered in an earlier term may belong to a file a restore has since replaced.
    this.resetBuffer();
    this.primaryContact = undefined;
    this.allowDegraded = allowDegraded;
    this.configure(replicas);
    this.log('promoted', { epoch, lsn: this.store.lsn });
    this.onPromoted?.();
    return { epoch, lsn: this.store.lsn, history };
  }

  /**
   * Steps down: as a replica of `primary`, or fenced when none is named. A primary first lets the
   * writes already committed reach a synchronous replica and the node it hands over to, when that
   * is one of its replicas (up to drainMs): a planned switchover loses nothing, also to an
   * asynchronous replica (another region's); writes still waiting after that fail (they were never
   * acknowledged).
   */
  async demote(epoch: number, primary: { id: string; url: string } | undefined, drainMs = 0) {
    const state = this.store.state;
    if (epoch < state.epoch) throw new StaleEpochError(epoch, state.epoch, 'the demotion');
    const role = primary ? 'replica' : 'fenced';
    const successor = primary ? this.links.get(primary.id) : undefined;
    const handedOver = () =>
      this.satisfied(this.store.lsn) &&
      (successor === undefined || (successor.state !== 'diverged' && (successor.appliedLsn ?? -1) >= this.store.lsn));
    const drained = await this.store.stepDown(
      (current) => {
        // A newer epoch may have arrived while this call waited for the write lock.
        if (epoch < current.epoch) throw new StaleEpochError(epoch, current.epoch, 'the demotion');
        return { role, epoch, history: current.history };
      },
      async () => {
        if (state.role !== 'primary') return true;
        const deadline = Date.now() + drainMs;
        while (!handedOver() && Date.now() < deadline) await this.changed(50);
        return handedOver();
      },
      // Read while still primary: what a fenced node may serve on GET /events from then on.
      () => this.acknowledgedLsn,
    );
    this.failWaiters(new NotPrimaryError(this.store.state));
    this.stopLinks();
    if (primary) this.primaryContact = { ...primary, epoch, at: Date.now() };
    this.log('demoted', { epoch, role, lsn: this.store.lsn, drained });
    return { role, epoch, lsn: this.store.lsn, drained };
  }

  /** The replica side of POST /replicate. */
  async receive(request: ReplicateRequest): Promise<{ lsn: number; epoch: number; truncated: number }> {
    const release = await this.receiving.acquire();
    try {
      return await this.receiveOne(request);
    } finally {
      release();
    }
  }

  private async receiveOne(request: ReplicateRequest): Promise<{ lsn: number; epoch: number; truncated: number }> {
    this.store.assertWritable();
    const state = this.store.state;
    if (request.epoch < state.epoch) throw new StaleEpochError(request.epoch, state.epoch);
    if (state.role === 'primary') {
      if (request.epoch === state.epoch) {
        throw new Error(`${request.primary.id} and this node both claim to be primary of epoch ${state.epoch}`);
      }
      // A newer primary exists: this one must not acknowledge anything again.
      await this.fence(request.epoch);
    }
    if (this.store.state.role === 'fenced') throw new NotPrimaryError(this.store.state);
    let truncated = 0;
    if (request.epoch > state.epoch || !sameHistory(state.history, request.history)) {
      const fork = forkPoint(state.history, request.history);
      if (fork !== undefined && this.store.lsn > fork) {
        const cut = await this.store.truncateAfter(fork);
        truncated = cut.removed;
        this.ackedThrough = Math.min(this.ackedThrough, fork);
        this.log('diverged_tail_discarded', {
          afterLsn: fork,
          removed: truncated,
          epoch: request.epoch,
          keptIn: cut.keptIn,
        });
      }
      await this.store.setReplicationState({ role: 'replica', epoch: request.epoch, history: request.history });
    }
    this.primaryContact = { ...request.primary, epoch: request.epoch, at: Date.now() };
    // Checked again under the write lock: a demotion or promotion meanwhile wins over this batch.
    const { lsn } = await this.store.applyReplicated(request.events, request.afterLsn, {
      epoch: request.epoch,
      history: request.history,
    });
    if (request.ackedLsn !== undefined) {
      this.ackedThrough = Math.max(this.ackedThrough, Math.min(request.ackedLsn, lsn));
    }
    return { lsn, epoch: request.epoch, truncated };
  }

  /**
   * The replica side of POST /replication/snapshot: a consistent copy of the primary's database
   * (its body) replaces this node's file, when the log would take too long or when this node has
   * nothing to protect (its file is damaged, or it has none). It is written beside the database,
   * opened by DuckDB in a child process and compared with the fingerprint the primary sent, and only
   * then swapped in: the file it replaces moves aside, never deleted (aside.ts). The node becomes a
   * replica of the sender.
   */
  async receiveSnapshot(
    body: IncomingMessage,
    meta: SnapshotMeta,
  ): Promise<{ lsn: number; epoch: number; movedAside: string | null }> {
    const release = await this.receiving.acquire();
    try {
      return await this.receiveSnapshotOne(body, meta);
    } finally {
      release();
    }
  }

  private async receiveSnapshotOne(
    body: IncomingMessage,
    meta: SnapshotMeta,
  ): Promise<{ lsn: number; epoch: number; movedAside: string | null }> {
    const state = this.store.state;
    const condition = this.store.condition.status;
    const rebuild = condition === 'damaged' || condition === 'empty';
    if (meta.epoch < state.epoch) throw new StaleEpochError(meta.epoch, state.epoch);
    if (!rebuild) {
      this.store.assertWritable();
      if (state.role !== 'replica') throw new NotPrimaryError(state);
    }
    const dir = join(dirname(this.store.path), 'replication-incoming');
    await mkdir(dir, { recursive: true });
    const incoming = join(dir, `snapshot-${meta.lsn}-${Date.now()}.duckdb`);
    try {
      await pipeline(body, createWriteStream(incoming));
      const expected = meta.fingerprint;
      // Compared in the primary's fingerprint version: the checksum the file recorded when it is
      // in that version, else every row hashed in it.
      const recorded = await recordedFingerprintFile(incoming);
      const found =
        recorded?.fingerprintVersion === expected.fingerprintVersion
          ? recorded
          : await fingerprintFile(incoming, { version: expected.fingerprintVersion });
      const differences = fingerprintDifferences(expected, found);
      if (differences.length > 0) {
        throw new Error(
          `the snapshot received does not match the primary's fingerprint v${expected.fingerprintVersion} (${differences.join('; ')})`,
        );
      }
      const ackedLsn = Math.min(meta.ackedLsn ?? 0, meta.lsn);
      const { movedAside } = await this.store.replaceFile(incoming, {
        reason: condition === 'damaged' ? 'damaged' : 'bootstrap',
        state: { role: 'replica', epoch: meta.epoch, history: meta.history },
        ackedLsn,
      });
      this.ackedThrough = ackedLsn;
      this.primaryContact = { ...meta.primary, epoch: meta.epoch, at: Date.now() };
      this.log('bootstrapped', {
        lsn: this.store.lsn,
        rows: this.store.rows,
        from: meta.primary.id,
        was: condition,
        movedAside: movedAside ?? null,
      });
      return { lsn: this.store.lsn, epoch: meta.epoch, movedAside: movedAside ?? null };
    } finally {
      await rm(incoming, { force: true });
    }
  }

  /** Learnt of a newer epoch while primary: refuse writes from now on. */
  async fence(newerEpoch: number): Promise<void> {
    if (this.store.state.role !== 'primary') return;
    // Decided under the write lock: a demotion that got there first (a rejoin) stands.
    const fenced = await this.store.setReplicationStateIf(
      (state) => state.role === 'primary',
      (state) => ({ role: 'fenced', epoch: Math.max(state.epoch, newerEpoch), history: state.history }),
      () => this.acknowledgedLsn,
    );
    if (!fenced) return;
    this.failWaiters(new NotPrimaryError(this.store.state));
    this.stopLinks();
    this.log('fenced', { epoch: newerEpoch, lsn: this.store.lsn });
  }

  /**
   * On the primary: the next thing each named replica gets is a snapshot instead of the log,
   * whatever its lag (a damaged or empty replica is rebuilt this way). Unknown ids are refused.
   */
  requestBootstrap(ids: readonly string[]): void {
    const unknown = ids.filter((id) => !this.links.has(id));
    if (unknown.length > 0) {
      throw new RangeError(
        `bootstrap: ${unknown.join(', ')} ${unknown.length === 1 ? 'is' : 'are'} not a replica of this primary (replicas: ${[...this.links.keys()].join(', ') || 'none'})`,
      );
    }
    for (const id of ids) this.links.get(id)!.bootstrapRequested = true;
    this.settle();
  }

  /** The store reopened its file after being unwritable, fenced if it was primary. */
  private reopenedFenced(): void {
    if (this.store.state.role === 'primary') return;
    this.failWaiters(new NotPrimaryError(this.store.state));
    this.stopLinks();
  }

  stop(): void {
    this.stopped = true;
    this.failWaiters(new Error('the node is stopping'));
    this.stopLinks();
  }

  // --- internals -------------------------------------------------------------------------------

  /** Events after `afterLsn`, whole batches, from memory when possible, else from the table. */
  async eventsAfter(afterLsn: number): Promise<LogEvent[]> {
    const first = this.buffer[0];
    // Beyond the store's head the buffer cannot be right (the file was truncated or replaced).
    if ((this.buffer.at(-1)?.lsn ?? 0) > this.store.lsn) this.resetBuffer();
    if (first && this.buffer.length > 0 && first.lsn <= afterLsn + 1) {
      const out: LogEvent[] = [];
      for (const batch of this.buffer) {
        if (batch.lsn <= afterLsn) continue;
        if (out.length > 0 && out.length + batch.events.length > this.maxBatchEvents) break;
        out.push(...batch.events);
      }
      return out;
    }
    const page = await this.store.events(afterLsn, this.maxBatchEvents);
    return JSON.parse(Buffer.from(page.eventsJson).toString('utf8')) as LogEvent[];
  }

  /** Resolves on the next commit or state change, or after ms. */
  changed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake.push(done);
    });
  }

  /** Called by links when a replica answers or fails. */
  settle(): void {
    const wake = this.wake;
    this.wake = [];
    for (const w of wake) w();
    this.waiters = this.waiters.filter((w) => {
      if (!this.satisfied(w.lsn)) return true;
      clearTimeout(w.timer);
      this.ackedThrough = Math.max(this.ackedThrough, w.lsn);
      w.resolve();
      return false;
    });
  }

  /**
   * The highest LSN that is acknowledged (or would be, for a write waiting now): what the log
   * archive may ship, and all that GET /events serves on any node. Committed batches above it may
   * still be discarded by a failover. On a node that is not primary: what it was told or knew
   * (ackedThrough), never beyond its own LSN.
   */
  get acknowledgedLsn(): number {
    const head = this.store.lsn;
    if (this.store.state.role !== 'primary') return Math.min(head, this.ackedThrough);
    if (this.leaseGate && !this.leaseGate()) return Math.min(head, this.ackedThrough);
    if (this.satisfied(head)) {
      this.ackedThrough = Math.max(this.ackedThrough, head);
      return head;
    }
    for (const link of this.links.values()) {
      if (link.spec.mode === 'sync' && link.appliedLsn !== undefined && link.state !== 'diverged') {
        this.ackedThrough = Math.max(this.ackedThrough, Math.min(head, link.appliedLsn));
      }
    }
    return Math.min(head, this.ackedThrough);
  }

  satisfied(lsn: number): boolean {
    // A node that is no longer primary acknowledges nothing, whatever its links say.
    if (this.stopped || this.store.state.role !== 'primary') return false;
    if (this.leaseGate && !this.leaseGate()) return false;
    const sync = [...this.links.values()].filter((l) => l.spec.mode === 'sync');
    if (sync.length === 0) return true;
    if (sync.some((l) => l.appliedLsn !== undefined && l.appliedLsn >= lsn && l.state !== 'diverged')) return true;
    return this.allowDegraded && !sync.some((l) => l.state === 'in-sync');
  }

  /**
   * Resolves once the write at `lsn` may be acknowledged. The acknowledged LSN is raised here, as
   * the answer goes out: were it raised only when read, a lease gate that closed in between would
   * leave an acknowledged batch above it (not served, not archived, recorded lower when fenced).
   */
  private acknowledged(lsn: number): Promise<void> {
    if (this.satisfied(lsn)) {
      this.ackedThrough = Math.max(this.ackedThrough, lsn);
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        lsn,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          reject(new NotReplicatedError(lsn, this.syncTimeoutMs));
        }, this.syncTimeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  private resetBuffer(): void {
    this.buffer = [];
    this.bufferedEvents = 0;
  }

  private committed(batch: CommittedBatch): void {
    // Standalone: nothing to feed. Emptied, so the buffer never has a hole in its LSNs; and a
    // batch that does not follow the last one means the file behind the buffer was replaced.
    const last = this.buffer.at(-1);
    if (this.links.size === 0 || (last && batch.lsn <= last.lsn)) this.resetBuffer();
    if (this.links.size === 0) {
      this.settle();
      return;
    }
    this.buffer.push(batch);
    this.bufferedEvents += batch.events.length;
    while (this.bufferedEvents > BUFFER_EVENTS && this.buffer.length > 1) {
      this.bufferedEvents -= this.buffer.shift()!.events.length;
    }
    this.settle();
  }

  private startLink(spec: ReplicaSpec): void {
    const link = new ReplicaLink({ ...spec }, this, this.log);
    this.links.set(spec.id, link);
    void link.run();
  }

  private stopLinks(): void {
    for (const link of this.links.values()) link.stop();
    this.links.clear();
    this.settle();
  }

  private failWaiters(err: Error): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.reject(err);
    }
  }

  /** Links keep running while this node is primary. */
  get running(): boolean {
    return !this.stopped && this.store.state.role === 'primary';
  }
}

/** One primary → replica sender. */
class ReplicaLink {
  state: LinkState = 'connecting';
  appliedLsn: number | undefined;
  lastAckAt: number | undefined;
  lastError: string | null = null;
  bootstraps = 0;
  /** POST /replication { bootstrap }: send a snapshot next, whatever the lag. */
  bootstrapRequested = false;
  private stopped = false;

  constructor(
    readonly spec: ReplicaSpec,
    private readonly owner: Replication,
    private readonly log: Logger,
  ) {}

  stop(): void {
    this.stopped = true;
  }

  answerAgeMs(): number | null {
    return this.lastAckAt === undefined ? null : Date.now() - this.lastAckAt;
  }

  status(head: number): ReplicaStatus {
    return {
      ...this.spec,
      state: this.state,
      appliedLsn: this.appliedLsn ?? null,
      lagLsn: this.appliedLsn === undefined ? null : Math.max(0, head - this.appliedLsn),
      lastAckMsAgo: this.answerAgeMs(),
      lastError: this.lastError,
      bootstraps: this.bootstraps,
    };
  }

  async run(): Promise<void> {
    let lastSent = 0;
    let failures = 0;
    while (!this.stopped && this.owner.running) {
      const head = this.owner.store.lsn;
      const behind = this.appliedLsn !== undefined && this.appliedLsn < head;
      const due = Date.now() - lastSent >= this.owner.heartbeatMs;
      if (!behind && !due && this.appliedLsn !== undefined && !this.bootstrapRequested) {
        await this.owner.changed(this.owner.heartbeatMs);
        continue;
      }
      try {
        if (this.bootstrapRequested || (behind && head - this.appliedLsn! > this.owner.bootstrapLagLsn)) {
          await this.bootstrap();
          this.bootstrapRequested = false;
          continue;
        }
        const after = this.appliedLsn;
        const events = behind ? await this.owner.eventsAfter(after!) : [];
        lastSent = Date.now();
        await this.send(events, head, behind ? after : undefined);
        failures = 0;
      } catch (err) {
        if (this.stopped) break;
        failures++;
        if (this.state !== 'down') this.log('replica_down', { replica: this.spec.id, error: errorMessage(err) });
        this.state = 'down';
        this.lastError = errorMessage(err);
        this.appliedLsn = undefined;
        this.owner.settle();
        await sleep(Math.min(1_000, 100 * failures));
      }
    }
  }

  /** Sends a consistent snapshot of this primary; the log continues from its LSN. */
  private async bootstrap(): Promise<void> {
    const store = this.owner.store;
    const dir = join(dirname(store.path), 'replication-outgoing');
    const path = join(dir, `${this.spec.id}-${Date.now()}.duckdb`);
    this.state = 'catching-up';
    this.log('replica_bootstrap', { replica: this.spec.id, appliedLsn: this.appliedLsn, head: store.lsn });
    try {
      const snap = await store.snapshot(path);
      const { epoch, history } = store.state;
      const meta: SnapshotMeta = {
        epoch,
        primary: this.owner.self,
        history,
        lsn: snap.lsn,
        ackedLsn: this.owner.acknowledgedLsn,
        fingerprint: {
          rows: snap.rows,
          minId: snap.minId,
          maxId: snap.maxId,
          maxLsn: snap.maxLsn,
          checksum: snap.checksum,
          fingerprintVersion: snap.fingerprintVersion,
        },
      };
      const response = await fetch(`${this.spec.url}/replication/snapshot`, {
        method: 'POST',
        headers: {
          'content-type': 'application/octet-stream',
          [SNAPSHOT_HEADER]: JSON.stringify(meta),
          ...this.owner.authorization(),
        },
        body: Readable.toWeb(createReadStream(path)) as ReadableStream<Uint8Array>,
        duplex: 'half',
        signal: AbortSignal.timeout(30 * 60_000),
      } as RequestInit);
      const answer = (await response.json()) as { lsn?: number; error?: { code: string; message: string } };
      if (!response.ok || typeof answer.lsn !== 'number') {
        throw new Error(
          `${this.spec.url}/replication/snapshot answered ${response.status}: ${answer.error?.message ?? ''}`,
        );
      }
      this.appliedLsn = answer.lsn;
      this.bootstraps++;
      this.lastAckAt = Date.now();
    } finally {
      await rm(path, { force: true });
    }
  }

  private async send(events: LogEvent[], head: number, afterLsn?: number): Promise<void> {
    const { epoch, history } = this.owner.store.state;
    const body: ReplicateRequest = {
      epoch,
      primary: this.owner.self,
      history,
      events,
      ackedLsn: this.owner.acknowledgedLsn,
      ...(afterLsn === undefined || events.length === 0 ? {} : { afterLsn }),
    };
    const response = await fetch(`${this.spec.url}/replicate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...this.owner.authorization() },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(this.owner.requestTimeoutMs),
    });
    const answer = (await response.json()) as {
      lsn?: number;
      epoch?: number;
      error?: { code: string; message: string; lsn?: number; epoch?: number };
    };
    if (this.stopped) return;
    if (response.ok && typeof answer.lsn === 'number') {
      this.appliedLsn = answer.lsn;
      this.lastAckAt = Date.now();
      this.lastError = null;
      if (answer.lsn > this.owner.store.lsn) {
        this.state = 'diverged';
        this.lastError = `the replica has LSN ${answer.lsn}, beyond this primary's ${this.owner.store.lsn}`;
      } else if (answer.lsn >= head) {
        if (this.state !== 'in-sync') this.log('replica_in_sync', { replica: this.spec.id, lsn: answer.lsn });
        this.state = 'in-sync';
      } else if (this.state !== 'in-sync') {
        this.state = 'catching-up';
      }
      this.owner.settle();
      return;
    }
    const code = answer.error?.code;
    if (code === 'ReplicationGap' && typeof answer.error?.lsn === 'number') {
      // It has less than this primary thought (it restarted, or was restored): resend from there.
      this.appliedLsn = answer.error.lsn;
      this.state = 'catching-up';
      this.owner.settle();
      return;
    }
    if (code === 'StaleEpoch') {
      await this.owner.fence(answer.error?.epoch ?? epoch + 1);
      return;
    }
    throw new Error(
      `${this.spec.url}/replicate answered ${response.status} ${code ?? ''}: ${answer.error?.message ?? ''}`,
    );
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Where this node's data may stop matching the primary's: the start LSN of the first epoch in the
 * primary's history that this node's history does not have. Undefined: nothing to discard.
 */
export function forkPoint(mine: readonly EpochStart[], theirs: readonly EpochStart[]): number | undefined {
  for (let i = 0; i < theirs.length; i++) {
    const t = theirs[i]!;
    const m = mine[i];
    if (!m || m.epoch !== t.epoch || m.startLsn !== t.startLsn) {
      return m && m.epoch === t.epoch ? Math.min(m.startLsn, t.startLsn) : t.startLsn;
    }
  }
  return undefined;
}
