/**
 * The node's database: the one DuckDB instance on <dataDir>/<database>.duckdb, the write lock,
 * and the operations the HTTP API exposes. Writes go through one connection under the lock;
 * reads each take a fresh connection so a long fingerprint never delays a write.
 *
 * Maintenance mode closes the file (so a restore can put another file in its place) and reopens
 * whatever is at the path afterwards. Everything that opens or closes the file does so holding
 * the write lock, after the running reads have ended, so no write or read ever sees a half-open
 * store.
 *
 * Apart from maintenance the database is in one condition (condition.ts): ok; damaged (a corrupt
 * file: writes refused until a rebuild or restore replaces it); unwritable (the write path fails:
 * the store retries reopening the file and comes back fenced); or empty (no database: it waits for
 * initialize() or a replacement file). Failures of DuckDB that say so set the condition, so a node
 * that cannot write answers so at once instead of failing every request.
 */
import { mkdir, rename, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { DuckDBBlobValue, DuckDBTimestampValue, type DuckDBConnection } from '@duckdb/node-api';
import { checkpointFully, walBytes } from '../duckdb/checkpoint';
import { type Fingerprint, currentRecordedFingerprint, fingerprint } from '../duckdb/fingerprint';
import { canonicalPath, withConnection } from '../duckdb/open';
import { type LogEvent, TS_ISO_SQL_FORMAT, applyEvents, formatIsoMicros } from '../duckdb/replay';
import { CURRENT_FINGERPRINT_VERSION, checksumSumSql } from '../duckdb/row-checksum';
import {
  SET_STATE_SQL,
  STATE_ACKED_LSN,
  STATE_CHECKSUM,
  STATE_EPOCH,
  STATE_HISTORY,
  STATE_LSN,
  STATE_ROLE,
  SchemaMismatchError,
  readPosition,
} from '../duckdb/schema';
import { syncDirectory } from '../storage/local';
import { asideName, moveAside } from './aside';
import {
  type Damage,
  DamagedError,
  type DetectedBy,
  NodeCondition,
  NotEmptyError,
  UnwritableError,
  classifyDatabaseError,
  damageOf,
  fileIdentity,
  readDamageMarker,
  writeDamageMarker,
} from './condition';
import { copyFast, removeQuietly, tempPathFor } from './files';
import { type Logger, errorMessage, silentLogger } from './log';
import { Gate, Mutex, type Release } from './mutex';
import { type ScrubSubject, scrubFile, staticSubject } from './scrubber';
import {
  type EpochStart,
  type NodeRole,
  type Opened,
  type ReplicationState,
  type Session,
  closeSession,
  fileState,
  openSession,
  sameHistory,
} from './session';
import {
  DatabaseMissingError,
  LsnAheadError,
  MaintenanceError,
  type MaintenanceState,
  NotPrimaryError,
  ReplicationGapError,
  StaleEpochError,
  StaleWalError,
  StoreClosedError,
} from './store-errors';

/** A committed batch as replication sends it. */
export interface CommittedBatch {
  lsn: number;
  events: LogEvent[];
}

export interface NewEvent {
  kind: string;
  /** Any JSON value; stored as its JSON text. */
  payload: unknown;
}

export interface AppendResult {
  lsn: number;
  firstId: number;
  lastId: number;
  count: number;
}

export interface StoreStats extends Fingerprint {
  /** The node's current LSN. */
  lsn: number;
  /** The LSN the fingerprint covers (rows with lsn <= asOfLsn). */
  asOfLsn: number;
  bytes: number;
  walBytes: number;
  /** Longest time a write waited for the write lock since start. */
  maxWriteStallMs: number;
}

export interface SnapshotResult extends Fingerprint {
  path: string;
  lsn: number;
  bytes: number;
  /** How long writes were blocked (the write lock was held). */
  stallMs: number;
  durationMs: number;
}

/** One page of the log (GET /events). */
export interface EventPage {
  /**
   * The events as the UTF-8 text of a JSON array, `[{ "id", "lsn", "ts", "kind", "payload" }, ...]`
   * in (lsn, id) order (each element a LogEvent), ready to send: built by DuckDB so that a page of
   * 100,000 rows costs the event loop a copy, not 100,000 object conversions.
   */
  eventsJson: Uint8Array;
  /** How many events eventsJson holds. */
  count: number;
  /** The afterLsn asked for. */
  fromLsn: number;
  /** LSN of the last event returned, or fromLsn when none. */
  lastLsn: number;
  /** The node's LSN when the page was read; the page never goes beyond it. */
  headLsn: number;
  /** Whether committed events exist after lastLsn (up to toLsn, when given). */
  more: boolean;
}

export interface MaintenanceOnResult extends MaintenanceState {
  status: 'maintenance';
  lsn: number;
  /** The database file, now closed: the file a restore replaces. */
  path: string;
}

export interface MaintenanceOffResult {
  status: 'ok';
  lsn: number;
  rows: number;
  path: string;
  /** True when the file was missing and a new empty database was created (allowEmpty). */
  created: boolean;
  /** The fingerprint of the file just opened (computed while opening it): proves which file it is. */
  fingerprint: Fingerprint;
}

const round = (ms: number): number => Math.round(ms * 10) / 10;

/** The store's running fingerprint from a recorded one, which must be in the current version. */
function runningOf(fp: Fingerprint) {
  if (fp.fingerprintVersion !== CURRENT_FINGERPRINT_VERSION) {
    throw new Error(`the recorded fingerprint is version ${fp.fingerprintVersion}, not ${CURRENT_FINGERPRINT_VERSION}`);
  }
  const { rows, minId, maxId, maxLsn } = fp;
  return { rows, minId, maxId, maxLsn, checksum: BigInt(fp.checksum) };
}

/**
 * Events with afterLsn < lsn <= toLsn as (count, last lsn, UTF-8 JSON array). DuckDB's built-in
 * json functions do the escaping, so kind and payload arrive as the exact stored strings; `ts` is
 * rendered with all six fractional digits so it parses back to the same microsecond.
 */
function eventsJsonQuery(afterLsn: number, toLsn: number): string {
  const event = `json_object('id', id, 'lsn', lsn, 'ts', strftime(ts, '${TS_ISO_SQL_FORMAT}'), 'kind', kind, 'payload', payload)`;
  return (
    `SELECT count(*)::VARCHAR, max(lsn)::VARCHAR, ` +
    `encode('[' || coalesce(string_agg(${event}::VARCHAR, ',' ORDER BY lsn, id), '') || ']') ` +
    `FROM events WHERE lsn > ${afterLsn} AND lsn <= ${toLsn}`
  );
}

/** What the file and its WAL looked like when maintenance closed them (dev:ino:size:mtime). */
interface ClosedFiles {
  db: string | null;
  wal: string | null;
}

/** Writes that fail in a row, for no reason DuckDB names, before the node calls itself unwritable. */
const FAILED_WRITES_TO_UNWRITABLE = 3;

/**
 * What an open failure means: a file DuckDB refuses or our schema check fails is damaged, a full or
 * read-only disk makes the node unwritable; anything else (another process holds the file, no
 * permission) is not the file's fault and stops the start.
 */
function openFailure(err: unknown): 'damaged' | 'unwritable' | undefined {
  if (err instanceof SchemaMismatchError) return 'damaged';
  const kind = classifyDatabaseError(err);
  if (kind === 'fatal') return 'unwritable';
  if (kind === 'corrupt') return 'damaged';
  const message = errorMessage(err);
  if (/Could not set lock|already open in this process|Permission denied|EACCES/i.test(message)) return undefined;
  return /^(IO|Serialization|Catalog|INTERNAL|Invalid Input) Error/i.test(message) ? 'damaged' : undefined;
}

export interface StoreOptions {
  /** The role of a file no node has run on yet (default primary). */
  role?: NodeRole;
  /** No database at the path: create one (default), or wait empty for initialize(). */
  ifMissing?: 'create' | 'wait';
  /** How often an unwritable store tries to reopen its file (default 2 s). */
  reopenIntervalMs?: number;
}

export class EventStore {
  readonly state: ReplicationState = { role: 'none', epoch: 0, history: [] };
  /** The database file (its directory's symlinks resolved). */
  readonly path: string;
  /** ok, damaged, unwritable or empty (maintenance is apart: maintenanceState). */
  readonly condition: NodeCondition;
  private readonly lock = new Mutex();
  /** Serializes entering and leaving maintenance, reopening, replacing and creating the file. */
  private readonly control = new Mutex();
  /** Shut while a snapshot waits for running reads; see snapshot(). */
  private readonly readGate = new Gate();
  private readonly reads = new Set<Promise<unknown>>();
  /** Scrub passes running: each holds a descriptor on the file until it notices it is going. */
  private readonly scrubs = new Set<Promise<unknown>>();
  /** Set when close() begins: a scrub stops at once, writes still queued commit. */
  private closeRequested = false;
  /** The open file; undefined in maintenance, after close(), and while none can be opened. */
  private session: Session | undefined;
  /** Counts the files opened: a scrub of an earlier one stops (scrubSubject). */
  private generation = 0;
  private maintenanceState: MaintenanceState | undefined;
  private closedFiles: ClosedFiles | undefined;
  private lastId = 0;
  private currentLsn = 0;
  private rowCount = 0;
  /**
   * The fingerprint of everything committed, in the current fingerprint version, kept up to date
   * by every append from the batch's own rows (the checksum adds up batch by batch). A snapshot
   * reads it under the write lock for free instead of scanning the table (seconds per GiB);
   * /stats still scans, so it audits this.
   */
  private running = {
    rows: 0,
    minId: null as number | null,
    maxId: null as number | null,
    maxLsn: null as number | null,
    checksum: 0n,
  };
  private longestWriteWaitMs = 0;
  private closing: Promise<void> | undefined;
  /** Set once close() holds the lock: writes queued before close() still commit. */
  private closed = false;
  private failedWritesInARow = 0;
  private reopenTimer: NodeJS.Timeout | undefined;
  private readonly reopenIntervalMs: number;

  /** The acknowledged LSN recorded in the file (or the damage marker) when it was opened. */
  recordedAckedLsn = 0;
  /** Called after each local commit, under the write lock, in LSN order (replication). */
  onCommit: ((batch: CommittedBatch) => void) | undefined;
  /** What the node knows to be acknowledged (replication sets it), recorded at role changes. */
  ackedLsn: () => number = () => this.recordedAckedLsn;
  /** Called once the store reopened its file by itself after being unwritable (fenced if it was primary). */
  onReopened: (() => void) | undefined;

  private constructor(
    path: string,
    private readonly log: Logger,
    private readonly initialRole: NodeRole,
    options: StoreOptions,
  ) {
    this.path = path;
    this.condition = new NodeCondition(path);
    this.reopenIntervalMs = options.reopenIntervalMs ?? 2_000;
  }

  /**
   * Opens (or creates) the database file and resumes after its highest id and LSN, in the role
   * stored in the file; `role` applies to a file no node has run on yet (default primary). A file
   * that cannot be opened, or none with ifMissing 'wait', gives a store in that condition.
   */
  static async open(path: string, log: Logger = silentLogger, options: StoreOptions = {}): Promise<EventStore> {
    await mkdir(dirname(resolve(path)), { recursive: true });
    const store = new EventStore(canonicalPath(path), log, options.role ?? 'primary', options);
    await store.start(options.ifMissing ?? 'create');
    return store;
  }

  private async start(ifMissing: 'create' | 'wait'): Promise<void> {
    const [db, wal] = await Promise.all([fileState(this.path), fileState(`${this.path}.wal`)]);
    if (db === null && wal !== null) {
      // DuckDB would start a new database and replay this WAL onto it.
      this.markDamaged({
        reason: `${this.path}.wal exists without ${this.path}: the database file is lost`,
        detectedBy: 'open',
        at: new Date().toISOString(),
      });
      return;
    }
    if (db === null && ifMissing === 'wait') {
      this.condition.set({ status: 'empty' });
      this.log('database_missing', { path: this.path, waiting: 'POST /initialize or a replication snapshot' });
      return;
    }
    const marker = await readDamageMarker(this.path);
    if (marker) {
      // Damage found while the node ran: DuckDB may still open the file, but it stays damaged.
      Object.assign(this.state, { role: marker.role, epoch: marker.epoch, history: marker.history });
      this.currentLsn = marker.lsn;
      this.rowCount = marker.rows;
      this.recordedAckedLsn = marker.ackedLsn;
      this.condition.set({ status: 'damaged', damage: marker.damage });
      this.log('damaged', { ...marker.damage, path: this.path, remembered: true });
      return;
    }
    let opened: Opened;
    try {
      opened = await openSession(this.path);
    } catch (err) {
      const failure = openFailure(err);
      if (failure === undefined) throw err;
      if (failure === 'damaged') this.markDamaged(damageOf(err, 'open'));
      else this.markUnwritable(damageOf(err, 'open'));
      return;
    }
    Object.assign(this.state, {
      role: opened.role ?? this.initialRole,
      epoch: opened.position.epoch,
      history: opened.history,
    });
    this.adopt(opened);
    await this.setReplicationState(this.state);
  }

  /** Stores role, epoch and history (under the write lock, in one transaction). */
  async setReplicationState(next: ReplicationState, ackedLsn?: number): Promise<void> {
    const release = await this.lock.acquire();
    try {
      await this.persistReplicationState(next, ackedLsn);
    } finally {
      release();
    }
  }

  /**
   * Like setReplicationState, but only when `still` holds of the state once the write lock is
   * held: a change decided on an earlier look (a fence) must not undo one made meanwhile (a
   * demotion to replica). Returns whether it was applied.
   */
  async setReplicationStateIf(
    still: (current: ReplicationState) => boolean,
    next: (current: ReplicationState) => ReplicationState,
    ackedLsn?: () => number,
  ): Promise<boolean> {
    const release = await this.lock.acquire();
    try {
      if (!still(this.state)) return false;
      await this.persistReplicationState(next(this.state), ackedLsn?.());
      return true;
    } finally {
      release();
    }
  }

  /**
   * Holds writes back, runs drain (which waits for what is committed to reach a replica), then
   * stores the new state, all under the write lock: no write commits between the drain and the
   * role change. Writes queued meanwhile find the node no longer primary.
   */
  async stepDown(
    next: (current: ReplicationState) => ReplicationState,
    drain: () => Promise<boolean>,
    ackedLsn?: () => number,
  ): Promise<boolean> {
    const release = await this.lock.acquire();
    try {
      const drained = await drain();
      // Computed from the state as it is now: a history a replica adopted while this call waited
      // for the lock must not be overwritten with the one read before.
      await this.persistReplicationState(next(this.state), ackedLsn?.());
      return drained;
    } finally {
      release();
    }
  }

  /**
   * Records role, epoch, history (and the acknowledged LSN when given) in the file, the caller
   * holding the write lock. A file that cannot take it (damaged, unwritable, none) does not stop a
   * role change: it holds in memory, and is written when the file is reopened or replaced (a fence
   * must never be lost to a full disk).
   */
  private async persistReplicationState(next: ReplicationState, ackedLsn?: number): Promise<void> {
    if (this.maintenanceState && !this.session) throw new MaintenanceError({ ...this.maintenanceState });
    const apply = (persisted: boolean): void => {
      this.state.role = next.role;
      this.state.epoch = next.epoch;
      this.state.history = next.history.map((h) => ({ ...h }));
      if (ackedLsn !== undefined) this.recordedAckedLsn = ackedLsn;
      this.log('replication_state', { role: next.role, epoch: next.epoch, lsn: this.currentLsn, persisted });
    };
    const session = this.condition.status === 'ok' ? this.session : undefined;
    if (!session || next.role === 'none') {
      apply(false);
      const current = this.condition.current;
      if (current.status === 'damaged') await this.recordDamage(current.damage);
      return;
    }
    const { writer } = session;
    try {
      await writer.run('BEGIN TRANSACTION');
      await writer.run(SET_STATE_SQL, [STATE_ROLE, next.role]);
      await writer.run(SET_STATE_SQL, [STATE_EPOCH, String(next.epoch)]);
      await writer.run(SET_STATE_SQL, [STATE_HISTORY, JSON.stringify(next.history)]);
      if (ackedLsn !== undefined) await writer.run(SET_STATE_SQL, [STATE_ACKED_LSN, String(ackedLsn)]);
      await writer.run('COMMIT');
    } catch (err) {
      await writer.run('ROLLBACK').catch(() => undefined);
      if (this.failed(err, 'write') === err) throw err;
      apply(false);
      return;
    }
    apply(true);
  }

  /**
   * Applies batches a primary replicated (ids, LSNs and timestamps as the primary gave them), in
   * one transaction with node_state. Events this node already has (lsn <= its LSN) are skipped, so
   * a resend after a lost answer is harmless; events that do not follow on are refused, unless
   * the primary says they follow `afterLsn` (at or below this node's LSN): the LSNs between are
   * holes of the history, batches a restore left out.
   */
  async applyReplicated(
    events: readonly LogEvent[],
    afterLsn?: number,
    sender?: { epoch: number; history: readonly EpochStart[] },
  ): Promise<{ applied: number; lsn: number }> {
    this.available('write');
    const release = await this.lock.acquire();
    try {
      const { writer } = this.opened();
      if (this.state.role !== 'replica') throw new NotPrimaryError(this.state);
      // The sender's epoch and history must still be this node's once the lock is held: a batch of
      // an epoch the node has since left must not land at an LSN the newer epoch decided.
      if (sender && sender.epoch < this.state.epoch)
        throw new StaleEpochError(sender.epoch, this.state.epoch, 'the batch');
      if (sender && (sender.epoch > this.state.epoch || !sameHistory(sender.history, this.state.history))) {
        // Not the sender's fault: its history was adopted and then changed here; it sends again.
        throw new Error(
          `this node's epoch history changed while the batch of epoch ${sender.epoch} waited to be applied; send it again`,
        );
      }
      const fresh = events.filter((e) => e.lsn > this.currentLsn);
      const first = fresh[0];
      const last = fresh[fresh.length - 1];
      if (!first || !last) return { applied: 0, lsn: this.currentLsn };
      const holes = afterLsn !== undefined && afterLsn <= this.currentLsn;
      if (first.lsn !== this.currentLsn + 1 && !holes) throw new ReplicationGapError(this.currentLsn + 1, first.lsn);
      let checksum: unknown;
      try {
        await applyEvents(writer, fresh);
        [checksum] = (
          await writer.runAndReadAll(`SELECT value FROM node_state WHERE key = '${STATE_CHECKSUM}'`)
        ).getRows()[0] ?? [null];
      } catch (err) {
        // applyEvents commits last: a failure may have left the batch committed or not.
        throw this.writeFailed(err, true);
      }
      this.failedWritesInARow = 0;
      this.running = {
        rows: this.running.rows + fresh.length,
        minId: this.running.minId ?? first.id,
        maxId: Math.max(this.running.maxId ?? 0, last.id),
        maxLsn: last.lsn,
        checksum: BigInt(String(checksum ?? '0')),
      };
      this.currentLsn = last.lsn;
      this.lastId = Math.max(this.lastId, last.id);
      this.rowCount += fresh.length;
      this.markerFollows();
      return { applied: fresh.length, lsn: this.currentLsn };
    } finally {
      release();
    }
  }

  /**
   * Removes the events after lsn: the tail a former primary (or an asynchronous replica) holds
   * beyond the point where a newer epoch began. Within a region no client was told those writes
   * succeeded (an acknowledgement needs the synchronous replica, and the new epoch starts from
   * it); after a region failover they may have been (the standby region's node was asynchronous).
   * Either way they are first copied to a DuckDB file kept aside
   * (<db>.duckdb.aside.<stamp>.diverged-tail, table `events`, listed by GET /aside) for the
   * operator, and only then removed. The recorded acknowledged LSN comes down to lsn with them.
   */
  async truncateAfter(lsn: number): Promise<{ removed: number; lsn: number; keptIn?: string }> {
    const release = await this.lock.acquire();
    try {
      const { writer } = this.opened();
      if (this.state.role === 'primary') throw new Error('a primary never discards its own events');
      if (lsn >= this.currentLsn) return { removed: 0, lsn: this.currentLsn };
      const keptIn = await asideName(this.path, 'diverged-tail');
      try {
        await writer.run(`ATTACH '${keptIn.replaceAll("'", "''")}' AS diverged_tail`);
        try {
          await writer.run(`CREATE TABLE diverged_tail.events AS SELECT * FROM events WHERE lsn > ${lsn} ORDER BY lsn`);
        } finally {
          await writer.run('DETACH diverged_tail');
        }
        await syncDirectory(dirname(this.path));
      } catch (err) {
        throw this.writeFailed(err, true);
      }
      await writer.run('BEGIN TRANSACTION');
      let removed = 0;
      try {
        await writer.run(
          `UPDATE node_state SET value = (value::HUGEINT - (SELECT ${checksumSumSql(CURRENT_FINGERPRINT_VERSION, 'e')} FROM events AS e WHERE e.lsn > ${lsn}))::VARCHAR WHERE key = '${STATE_CHECKSUM}'`,
        );
        const [count] =
          (await writer.runAndReadAll(`SELECT count(*)::VARCHAR FROM events WHERE lsn > ${lsn}`)).getRows()[0] ?? [];
        removed = Number(count ?? 0);
        await writer.run(`DELETE FROM events WHERE lsn > ${lsn}`);
        await writer.run(SET_STATE_SQL, [STATE_LSN, String(lsn)]);
        await writer.run(
          `UPDATE node_state SET value = least(value::BIGINT, ${lsn})::VARCHAR WHERE key = '${STATE_ACKED_LSN}'`,
        );
        await writer.run('COMMIT');
      } catch (err) {
        await writer.run('ROLLBACK').catch(() => undefined);
        throw this.writeFailed(err, true);
      }
      try {
        await writer.run('CHECKPOINT');
        const position = await readPosition(writer);
        const { fingerprint: fp } = await currentRecordedFingerprint(writer);
        this.lastId = position.lastId;
        this.currentLsn = position.lsn;
        this.rowCount = position.rows;
        this.running = runningOf(fp);
      } catch (err) {
        throw this.failed(err, 'checkpoint');
      }
      this.recordedAckedLsn = Math.min(this.recordedAckedLsn, lsn);
      this.log('truncated', { afterLsn: lsn, removed, keptIn });
      return { removed, lsn: this.currentLsn, keptIn };
    } finally {
      release();
    }
  }

  get lsn(): number {
    return this.currentLsn;
  }
  get rows(): number {
    return this.rowCount;
  }
  get maxWriteStallMs(): number {
    return round(this.longestWriteWaitMs);
  }
  /** Set while the node is in maintenance (including while it is closing the file for it). */
  get maintenance(): MaintenanceState | undefined {
    return this.maintenanceState && { ...this.maintenanceState };
  }
  /** Whether the write path works: the condition is ok (maintenance is a pause, not a failure). */
  get writable(): boolean {
    return this.condition.status === 'ok';
  }

  /** Refuses (DamagedError, UnwritableError, EmptyError, …) unless the file can take writes now. */
  assertWritable(): void {
    this.available('write');
  }

  /** Appends one batch in one transaction; resolves after COMMIT (which fsyncs the WAL). */
  async append(events: readonly NewEvent[]): Promise<AppendResult> {
    if (events.length === 0) throw new RangeError('a batch needs at least one event');
    // Serialize outside the lock: it is the costliest per-event work and needs no ordering.
    const rows = events.map((e) => ({ kind: e.kind, payload: JSON.stringify(e.payload) ?? 'null' }));
    // Refused before queuing: only writes already queued when maintenance began still commit.
    this.available('write');
    if (this.state.role !== 'primary') throw new NotPrimaryError(this.state);
    const asked = performance.now();
    const release = await this.lock.acquire();
    this.longestWriteWaitMs = Math.max(this.longestWriteWaitMs, performance.now() - asked);
    try {
      // Queued before maintenance began: still commits, as long as the file is open.
      const { writer, updateLsn, updateChecksum, batchChecksum } = this.opened();
      // Fenced or demoted while this write waited for the lock.
      if (this.state.role !== 'primary') throw new NotPrimaryError(this.state);
      const lsn = this.currentLsn + 1;
      const firstId = this.lastId + 1;
      const micros = BigInt(Date.now()) * 1000n;
      const ts = new DuckDBTimestampValue(micros);
      let committing = false;
      try {
        await writer.run('BEGIN TRANSACTION');
        // The appender writes into the open transaction: rows and LSN commit together or not at all.
        const appender = await writer.createAppender('events');
        const lsnValue = BigInt(lsn);
        let id = firstId;
        for (const row of rows) {
          appender.appendBigInt(BigInt(id++));
          appender.appendBigInt(lsnValue);
          appender.appendTimestamp(ts);
          appender.appendVarchar(row.kind);
          appender.appendVarchar(row.payload);
          appender.endRow();
        }
        appender.flushSync();
        appender.closeSync();
        updateLsn.bindVarchar(1, String(lsn));
        await updateLsn.run();
        // Only the batch's own rows: zone maps on lsn skip everything older.
        batchChecksum.bindBigInt(1, lsnValue);
        const [batchSum] = (await batchChecksum.runAndReadAll()).getRows()[0] ?? [];
        const checksum = this.running.checksum + BigInt(String(batchSum ?? '0'));
        updateChecksum.bindVarchar(1, checksum.toString());
        await updateChecksum.run();
        committing = true;
        await writer.run('COMMIT');
        this.running = {
          rows: this.running.rows + rows.length,
          minId: this.running.minId ?? firstId,
          maxId: firstId + rows.length - 1,
          maxLsn: lsn,
          checksum,
        };
      } catch (err) {
        await writer
          .run('ROLLBACK')
          .catch((rollbackErr: unknown) => this.log('rollback_failed', { error: errorMessage(rollbackErr) }));
        throw this.writeFailed(err, committing);
      }
      this.failedWritesInARow = 0;
      this.currentLsn = lsn;
      this.lastId = firstId + rows.length - 1;
      this.rowCount += rows.length;
      this.markerFollows();
      if (this.onCommit) {
        const iso = formatIsoMicros(micros);
        this.onCommit({
          lsn,
          events: rows.map((row, i) => ({ id: firstId + i, lsn, ts: iso, kind: row.kind, payload: row.payload })),
        });
      }
      return { lsn, firstId, lastId: this.lastId, count: rows.length };
    } finally {
      release();
    }
  }

  /** Fingerprint of the events up to upToLsn (default: the current LSN), on its own connection. */
  async fingerprint(upToLsn?: number): Promise<Fingerprint> {
    return this.read((c) => fingerprint(c, upToLsn ?? this.currentLsn));
  }

  async stats(upToLsn?: number): Promise<StoreStats> {
    this.available('read');
    const current = this.currentLsn;
    if (upToLsn !== undefined && upToLsn > current) throw new LsnAheadError(upToLsn, current);
    // Filtering by a committed LSN makes the numbers exact even while writes continue.
    const asOfLsn = upToLsn ?? current;
    return this.read(async (c) => {
      const fp = await fingerprint(c, asOfLsn);
      // Inside the read: the file cannot be closed for maintenance meanwhile.
      const [bytes, wal] = await Promise.all([stat(this.path).then((s) => s.size), walBytes(this.path)]);
      return { lsn: current, asOfLsn, bytes, walBytes: wal, maxWriteStallMs: this.maxWriteStallMs, ...fp };
    });
  }

  /**
   * One page of the log: committed events with afterLsn < lsn <= min(toLsn, head), in (lsn, id)
   * order, at least `limit` rows when there are that many, and always whole batches: the page
   * ends at an LSN boundary, so it may exceed limit by up to one batch (a batch larger than limit
   * comes whole, alone).
   *
   * Bounded by the head LSN noted before reading: every batch up to it has committed (the LSN
   * moves after COMMIT), so the page is exact and repeatable however writes continue meanwhile,
   * and no half-committed batch can show up. It is an ordinary read (fresh connection, read gate),
   * so it never holds the write lock; a snapshot waits for it like for a /stats read.
   */
  async events(afterLsn: number, limit: number, toLsn?: number): Promise<EventPage> {
    for (const [name, value] of [
      ['afterLsn', afterLsn],
      ['limit', limit],
      ['toLsn', toLsn ?? afterLsn],
    ] as const) {
      if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer`);
    }
    if (limit < 1) throw new RangeError('limit must be at least 1');
    if (toLsn !== undefined && toLsn < afterLsn) throw new RangeError('toLsn must not be below afterLsn');
    this.available('read');
    const head = this.currentLsn;
    if (afterLsn > head) throw new LsnAheadError(afterLsn, head, 'afterLsn');
    const upper = Math.min(toLsn ?? head, head);
    const empty = { fromLsn: afterLsn, lastLsn: afterLsn, headLsn: head, more: false };
    if (upper <= afterLsn) return { ...empty, eventsJson: Buffer.from('[]'), count: 0 };
    return this.read(async (c) => {
      // The LSN of the limit-th row: the page ends with that whole batch. A top-N on lsn alone is
      // cheap, and zone maps on lsn skip the row groups at or before afterLsn.
      const cutRows = (
        await c.runAndReadAll(
          `SELECT lsn FROM events WHERE lsn > ${afterLsn} AND lsn <= ${upper} ORDER BY lsn LIMIT 1 OFFSET ${limit - 1}`,
        )
      ).getRows();
      const cut = cutRows.length > 0 ? Number(cutRows[0]?.[0]) : upper;
      const [count, lastLsn, json] = (await c.runAndReadAll(eventsJsonQuery(afterLsn, cut))).getRows()[0] ?? [];
      const more =
        cut < upper &&
        (await c.runAndReadAll(`SELECT 1 FROM events WHERE lsn > ${cut} AND lsn <= ${upper} LIMIT 1`)).currentRowCount >
          0;
      if (!(json instanceof DuckDBBlobValue)) throw new Error('the events page query returned no JSON');
      return {
        ...empty,
        eventsJson: json.bytes,
        count: Number(count ?? 0),
        lastLsn: lastLsn === null || lastLsn === undefined ? afterLsn : Number(lastLsn),
        more,
      };
    });
  }

  /**
   * Writes a consistent copy of the database to target (already validated by the caller).
   *
   * Never copies a live file (docs/architecture.md, rule 1): writes are paused by holding the write lock, a
   * checkpoint that provably emptied the WAL puts every committed row in the main file, and only
   * then is the main file copied. The lock is released before the slow, lock-free parts: fsync,
   * rename, and the fingerprint, which is computed on the live database with lsn <= the snapshot
   * LSN (rows are immutable, so that equals the content at the instant of the copy).
   *
   * A read that began before the latest commits makes CHECKPOINT fail ("other write transactions
   * active"), and FORCE CHECKPOINT then waits for that read: a /stats fingerprint (~1.2 s/GiB)
   * would be added to the write stall. So new reads are held at a gate while the reads already
   * running finish, with writes still flowing; the gate opens as soon as the write lock is held,
   * since reads that start then do not hinder the checkpoint.
   */
  async snapshot(target: string): Promise<SnapshotResult> {
    this.available('write');
    const started = performance.now();
    await mkdir(dirname(target), { recursive: true });
    const tmp = tempPathFor(target);
    let copy: Awaited<ReturnType<EventStore['copyWithWritesPaused']>>;
    let checkMs: number;
    try {
      copy = await this.copyWithWritesPaused(tmp);
      // The copy is the file as DuckDB left it at a checkpoint, and nobody writes it: its blocks
      // are checked without races, so a damaged source never becomes a backup (the node turns
      // damaged and the backup fails once, not after hours of retried verifications).
      const checkStarted = performance.now();
      const check = await scrubFile(staticSubject(tmp), 0);
      checkMs = performance.now() - checkStarted;
      if (check.kind === 'damaged') {
        this.markDamaged({
          reason: `${check.reason.replace(tmp, this.path)} (found in the consistent copy taken for a snapshot)`,
          detectedBy: 'scrub',
          at: new Date().toISOString(),
        });
        throw this.condition.refusal('write') ?? new Error(check.reason);
      }
      // No fsync: a snapshot is a transient file that is verified and stored elsewhere, and
      // taken again if the host crashes. The rename keeps a retried snapshot atomic.
      await rename(tmp, target);
    } catch (err) {
      await removeQuietly(tmp);
      throw err;
    }
    const fp = copy.fingerprint;
    const bytes = (await stat(target)).size;
    const durationMs = round(performance.now() - started);
    const result = { path: target, lsn: copy.lsn, bytes, stallMs: round(copy.stallMs), durationMs, ...fp };
    this.log('snapshot', {
      ...result,
      checkpointMs: round(copy.checkpointMs),
      copyMs: round(copy.stallMs - copy.checkpointMs),
      blockCheckMs: round(checkMs),
    });
    return result;
  }

  /** Checkpoints and copies the main file to tmp while holding the write lock. */
  private async copyWithWritesPaused(
    tmp: string,
  ): Promise<{ lsn: number; stallMs: number; checkpointMs: number; fingerprint: Fingerprint }> {
    const release = await this.pauseWrites();
    const locked = performance.now();
    try {
      const { writer } = this.opened();
      const checkpoint = await checkpointFully(writer, this.path).catch((err: unknown) => {
        throw this.failed(err, 'checkpoint');
      });
      const checkpointMs = performance.now() - locked;
      if (checkpoint.attempts > 1) this.log('checkpoint_retried', { ...checkpoint });
      const lsn = this.currentLsn;
      const fingerprint = this.runningFingerprint();
      await copyFast(this.path, tmp);
      return { lsn, stallMs: performance.now() - locked, checkpointMs, fingerprint };
    } finally {
      release();
    }
  }

  /** Holds new reads back until the running ones end, then takes the write lock. */
  private async pauseWrites(): Promise<Release> {
    const openGate = this.readGate.shut();
    try {
      await Promise.allSettled([...this.reads]);
      return await this.lock.acquire();
    } finally {
      openGate();
    }
  }

  /**
   * Enters maintenance: new writes and reads are refused from now on, writes already queued for
   * the lock commit first, running reads end, then the file is checkpointed and closed, so
   * another process may move it aside and put a restored file in its place. Entering again only
   * updates the reason (when one is given). A node with no open file (damaged at start, empty,
   * unwritable) enters at once: there is nothing to close.
   */
  async enterMaintenance(reason?: string): Promise<MaintenanceOnResult> {
    return this.exclusive(async () => {
      if (this.closed) throw new StoreClosedError();
      const current = this.maintenanceState;
      if (current && !this.session) {
        if (reason !== undefined) current.reason = reason;
        return { status: 'maintenance', ...current, lsn: this.currentLsn, path: this.path };
      }
      const state: MaintenanceState = current ?? { reason: reason ?? null, since: new Date().toISOString() };
      this.maintenanceState = state;
      await this.scrubsGone();
      const release = await this.lock.acquire();
      try {
        if (this.closed) throw new StoreClosedError();
        await Promise.allSettled([...this.reads]);
        const session = this.session;
        this.session = undefined;
        if (session) await closeSession(session, this.path, this.log, this.condition.status !== 'unwritable');
        const [db, wal] = await Promise.all([fileState(this.path), fileState(`${this.path}.wal`)]);
        this.closedFiles = { db, wal };
        this.log('maintenance_on', {
          reason: state.reason,
          lsn: this.currentLsn,
          rows: this.rowCount,
          walBytes: await walBytes(this.path),
          condition: this.condition.status,
        });
        return { status: 'maintenance', ...state, lsn: this.currentLsn, path: this.path };
      } catch (err) {
        // Still open (e.g. the node is stopping): maintenance did not begin. If the close itself
        // failed, the file stays closed to this process and maintenance stays on.
        if (this.session) this.maintenanceState = current;
        throw err;
      } finally {
        release();
      }
    });
  }

  /**
   * Leaves maintenance: reopens whatever file is now at the path (or creates an empty database
   * when it is missing and allowEmpty is set), recomputes the position and running fingerprint
   * from it, and resumes writes. Refused, staying in maintenance, when the file is missing
   * (DatabaseMissingError) or a WAL is there that this node did not leave beside this very file
   * (StaleWalError). Not in maintenance: nothing to do. The file opened sets the condition: ok,
   * or damaged again when it is the very file damage was found in.
   */
  async exitMaintenance(options: { allowEmpty?: boolean } = {}): Promise<MaintenanceOffResult> {
    return this.exclusive(async () => {
      if (this.closed) throw new StoreClosedError();
      const done = (created: boolean): MaintenanceOffResult => ({
        status: 'ok',
        lsn: this.currentLsn,
        rows: this.rowCount,
        path: this.path,
        created,
        fingerprint: this.runningFingerprint(),
      });
      if (!this.maintenanceState) return done(false);
      const release = await this.lock.acquire();
      try {
        if (this.closed) throw new StoreClosedError();
        const walPath = `${this.path}.wal`;
        const [db, wal] = await Promise.all([fileState(this.path), fileState(walPath)]);
        if (db === null && !options.allowEmpty) throw new DatabaseMissingError(this.path);
        const walSize = await walBytes(this.path);
        if (walSize > 0 && !(wal === this.closedFiles?.wal && db === this.closedFiles.db)) {
          throw new StaleWalError(walPath, walSize);
        }
        const marker = await readDamageMarker(this.path);
        const opened = await openSession(this.path);
        // A restored file carries the epoch of its source; this node's own epoch never goes back.
        this.state.epoch = Math.max(this.state.epoch, opened.position.epoch);
        if (this.state.role === 'none') {
          this.state.role = opened.role ?? this.initialRole;
          this.state.history = opened.history;
        }
        this.adopt(opened);
        this.condition.set(marker ? { status: 'damaged', damage: marker.damage } : { status: 'ok' });
        this.stopReopening();
        const reason = this.maintenanceState.reason;
        this.maintenanceState = undefined;
        this.closedFiles = undefined;
        await this.persistReplicationState(this.state);
        this.log('maintenance_off', {
          reason,
          created: db === null,
          lsn: this.currentLsn,
          rows: this.rowCount,
          checksum: this.running.checksum.toString(),
          condition: this.condition.status,
        });
        return done(db === null);
      } finally {
        release();
      }
    });
  }

  /**
   * Creates the database of an empty node (POST /initialize): role primary (the first node of a
   * new cluster: its first batch gets LSN 1) or replica (fed by its primary from LSN 0), at epoch.
   * Refused (NotEmptyError) unless the node is empty and there is still no file at the path.
   */
  async initialize(
    role: 'primary' | 'replica',
    epoch: number,
  ): Promise<{ role: NodeRole; epoch: number; lsn: number; path: string }> {
    return this.exclusive(async () => {
      if (this.closed) throw new StoreClosedError();
      if (this.maintenanceState) throw new MaintenanceError({ ...this.maintenanceState });
      if (this.condition.status !== 'empty' || (await fileState(this.path)) !== null) {
        throw new NotEmptyError(this.path);
      }
      const release = await this.lock.acquire();
      try {
        this.adopt(await openSession(this.path));
        this.condition.set({ status: 'ok' });
        // Epoch 1 is the first epoch of every cluster and has no recorded start (docs/node-api.md).
        const history = role === 'primary' && epoch > 1 ? [{ epoch, startLsn: 0 }] : [];
        await this.persistReplicationState({ role, epoch, history }, 0);
        this.log('initialized', { role, epoch, path: this.path });
        return { role, epoch, lsn: this.currentLsn, path: this.path };
      } finally {
        release();
      }
    });
  }

  /**
   * Puts `incoming` (a verified database file in the same directory) in place of the node's file,
   * whatever condition it is in: the current file, its WAL and its damage marker move aside
   * (aside.ts: never deleted), the new file is opened, and the node takes `state` and `ackedLsn`
   * with it. Returns where the old file went (undefined when there was none).
   */
  async replaceFile(
    incoming: string,
    options: { reason: string; state: ReplicationState; ackedLsn: number },
  ): Promise<{ movedAside: string | undefined }> {
    return this.exclusive(async () => {
      if (this.closed) throw new StoreClosedError();
      if (this.maintenanceState) throw new MaintenanceError({ ...this.maintenanceState });
      this.generation++;
      await this.scrubsGone();
      const release = await this.lock.acquire();
      try {
        await Promise.allSettled([...this.reads]);
        const old = this.session;
        this.session = undefined;
        if (old) await closeSession(old, this.path, this.log, this.condition.status === 'ok');
        const movedAside = await moveAside(this.path, options.reason);
        await rename(incoming, this.path);
        await syncDirectory(dirname(this.path));
        let opened: Opened;
        try {
          opened = await openSession(this.path);
        } catch (err) {
          // Verified by DuckDB before it came here, yet it does not open: nothing is in place now.
          this.condition.set({ status: 'ok' });
          this.markDamaged(damageOf(err, 'open'));
          throw err;
        }
        this.adopt(opened);
        this.condition.set({ status: 'ok' });
        this.stopReopening();
        this.failedWritesInARow = 0;
        await this.persistReplicationState(options.state, options.ackedLsn);
        this.log('file_replaced', { reason: options.reason, movedAside, lsn: this.currentLsn, rows: this.rowCount });
        return { movedAside };
      } finally {
        release();
      }
    });
  }

  /**
   * The live file for the scrubber: its generation is defined only while the file is open and ok
   * (a damaged, unwritable or closed file is not scrubbed), and a recheck runs under the write lock.
   */
  scrubSubject(): ScrubSubject {
    const generation = (): number | undefined =>
      this.session && !this.closeRequested && !this.maintenanceState && this.condition.status === 'ok'
        ? this.generation
        : undefined;
    return {
      path: this.path,
      generation,
      hold: async (pass) => {
        const running = pass();
        this.scrubs.add(running);
        try {
          return await running;
        } finally {
          this.scrubs.delete(running);
        }
      },
      withWritesPaused: async (expected, fn) => {
        const release = await this.lock.acquire();
        try {
          return generation() === expected ? await fn() : undefined;
        } finally {
          release();
        }
      },
    };
  }

  /** The scrub found a damaged block (confirmed with writes paused). */
  scrubFoundDamage(reason: string): void {
    this.markDamaged({ reason, detectedBy: 'scrub', at: new Date().toISOString() });
  }

  /** Lets queued writes finish, checkpoints, and closes the file. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    this.stopReopening();
    this.closeRequested = true;
    await this.scrubsGone();
    // FIFO lock: every write queued before close() commits before this runs.
    const release = await this.lock.acquire();
    this.closed = true;
    try {
      await Promise.allSettled([...this.reads]);
      const session = this.session;
      this.session = undefined;
      if (session) await closeSession(session, this.path, this.log, this.condition.status !== 'unwritable');
    } finally {
      release();
    }
  }

  /** Takes over a freshly opened file: its position and fingerprint become the store's. */
  private adopt({ session, position, initial, ackedLsn }: Opened): void {
    this.session = session;
    this.generation++;
    this.lastId = position.lastId;
    this.currentLsn = position.lsn;
    this.rowCount = position.rows;
    this.recordedAckedLsn = ackedLsn;
    this.running = runningOf(initial.fingerprint);
    if (initial.upgradedFrom !== undefined) {
      this.log('fingerprint_recorded', {
        fingerprintVersion: initial.fingerprint.fingerprintVersion,
        previousVersion: initial.upgradedFrom,
        rows: initial.fingerprint.rows,
      });
    }
  }

  // --- condition -------------------------------------------------------------------------------

  /**
   * What a failed DuckDB call means for the node: a corrupt file makes it damaged, a fatal error
   * (invalidated instance, full disk) unwritable. Returns the error to throw: the refusal of the
   * new condition, or err itself when it says nothing about the file.
   */
  private failed(err: unknown, detectedBy: DetectedBy): unknown {
    if (err instanceof DamagedError || err instanceof UnwritableError) return err;
    const kind = classifyDatabaseError(err);
    if (kind === undefined) return err;
    // "Transaction COMMIT succeeded and is durable, but the autocheckpoint failed": a checkpoint.
    const by = /checkpoint/i.test(errorMessage(err)) ? 'checkpoint' : detectedBy;
    if (kind === 'corrupt') this.markDamaged(damageOf(err, by));
    else this.markUnwritable(damageOf(err, by));
    return this.condition.refusal('write') ?? err;
  }

  /**
   * A write that failed: classified as above; a failed COMMIT leaves the batch's fate unknown (and
   * the position kept in memory with it), and several failures in a row mean the write path is
   * broken even when DuckDB does not say why. Either makes the node unwritable: the reopen reads
   * the position back from the file.
   */
  private writeFailed(err: unknown, atCommit: boolean): unknown {
    if (err instanceof RangeError) return err;
    const refusal = this.failed(err, 'write');
    if (refusal !== err) return refusal;
    this.failedWritesInARow++;
    if (atCommit || this.failedWritesInARow >= FAILED_WRITES_TO_UNWRITABLE) {
      const reason = atCommit
        ? `a commit failed, so whether it took effect is unknown: ${errorMessage(err)}`
        : `${this.failedWritesInARow} writes in a row failed; the last: ${errorMessage(err)}`;
      this.markUnwritable(damageOf(new Error(reason), 'write'));
      return this.condition.refusal('write') ?? err;
    }
    return err;
  }

  private markDamaged(damage: Damage): void {
    if (this.condition.status === 'damaged') return;
    this.condition.set({ status: 'damaged', damage });
    this.stopReopening();
    this.log('damaged', { ...damage, path: this.path });
    // A file DuckDB cannot open says so again at every start; damage found while running is
    // remembered, since DuckDB may open that file without a complaint.
    if (damage.detectedBy !== 'open') void this.recordDamage(damage);
  }

  /** A write that was past the gate when damage was found still commits: the marker follows it. */
  private markerFollows(): void {
    const current = this.condition.current;
    if (current.status === 'damaged' && current.damage.detectedBy !== 'open') void this.recordDamage(current.damage);
  }

  /** Writes the damage marker; one at a time, each with the position as of its turn. */
  private recordDamage(damage: Damage): Promise<void> {
    this.markerWrites = this.markerWrites.then(() => this.writeMarker(damage));
    return this.markerWrites;
  }

  private markerWrites: Promise<void> = Promise.resolve();

  private async writeMarker(damage: Damage): Promise<void> {
    try {
      const file = await fileIdentity(this.path);
      if (!file) return;
      const { role, epoch, history } = this.state;
      await writeDamageMarker(this.path, {
        damage,
        file,
        role,
        epoch,
        history,
        lsn: this.currentLsn,
        rows: this.rowCount,
        ackedLsn: this.ackedLsn(),
      });
    } catch (err) {
      this.log('damage_marker_failed', { error: errorMessage(err) });
    }
  }

  private markUnwritable(damage: Damage): void {
    if (this.condition.status !== 'ok') return;
    this.condition.set({ status: 'unwritable', damage });
    this.log('unwritable', { ...damage, path: this.path, retryEveryMs: this.reopenIntervalMs });
    this.reopenTimer = setInterval(() => {
      this.reopen().catch((err: unknown) => this.log('reopen_failed', { error: errorMessage(err) }));
    }, this.reopenIntervalMs);
    this.reopenTimer.unref();
  }

  private stopReopening(): void {
    clearInterval(this.reopenTimer);
    this.reopenTimer = undefined;
  }

  /**
   * An unwritable node tries its file again: closes the instance (DuckDB wants an invalidated one
   * reopened), opens the file and checkpoints it. DuckDB opens a file on a full disk, so only a
   * checkpoint that empties the WAL proves that writes land again. Then it is ok, but a primary
   * comes back fenced: it may have been failed over meanwhile, and the control plane rejoins it.
   */
  private async reopen(): Promise<void> {
    const reopened = await this.exclusive(async () => {
      if (this.closed || this.maintenanceState || this.condition.status !== 'unwritable') return false;
      await this.scrubsGone();
      const release = await this.lock.acquire();
      try {
        // What was acknowledged before: the reopened file may hold more (a commit DuckDB made
        // durable and then reported failed), which no client was told about.
        const acked = this.ackedLsn();
        await Promise.allSettled([...this.reads]);
        const old = this.session;
        this.session = undefined;
        if (old) await closeSession(old, this.path, this.log, false);
        let opened: Opened | undefined;
        try {
          opened = await openSession(this.path);
          await checkpointFully(opened.session.writer, this.path);
        } catch (err) {
          if (opened) await closeSession(opened.session, this.path, this.log, false).catch(() => undefined);
          if (openFailure(err) === 'damaged') this.markDamaged(damageOf(err, 'open'));
          else this.log('reopen_failed', { error: errorMessage(err).split('\n')[0] });
          return false;
        }
        this.adopt(opened);
        const known = this.state.role === 'none' ? (opened.role ?? this.initialRole) : this.state.role;
        const next: ReplicationState = {
          role: known === 'primary' ? 'fenced' : known,
          epoch: Math.max(this.state.epoch, opened.position.epoch),
          history: this.state.role === 'none' ? opened.history : this.state.history,
        };
        // Fenced before anyone can see the file ok again (/health reads without the lock).
        this.state.role = next.role;
        this.condition.set({ status: 'ok' });
        this.stopReopening();
        this.failedWritesInARow = 0;
        await this.persistReplicationState(next, Math.min(acked, this.currentLsn));
        this.log('reopened', { role: this.state.role, lsn: this.currentLsn, rows: this.rowCount });
        return true;
      } finally {
        release();
      }
    });
    if (reopened) this.onReopened?.();
  }

  /**
   * Waits for scrub passes to let go of the file; the caller has already made the generation
   * undefined or different, so each stops at its next block. Called before taking the write lock:
   * a pass may be waiting for the lock to recheck a block.
   */
  private async scrubsGone(): Promise<void> {
    await Promise.allSettled([...this.scrubs]);
  }

  private runningFingerprint(): Fingerprint {
    return {
      ...this.running,
      checksum: this.running.checksum.toString(),
      fingerprintVersion: CURRENT_FINGERPRINT_VERSION,
    };
  }

  /** For work already admitted (holding the lock): the open session, or why there is none. */
  private opened(): Session {
    if (this.closed) throw new StoreClosedError();
    if (this.maintenanceState && !this.session) throw new MaintenanceError({ ...this.maintenanceState });
    const refusal = this.condition.refusal('write');
    if (refusal) throw refusal;
    if (!this.session) throw new StoreClosedError();
    return this.session;
  }

  /** For new work: the open session, or why none is admitted (stopping, maintenance, the condition). */
  private available(kind: 'read' | 'write'): Session {
    if (this.closed) throw new StoreClosedError();
    if (this.maintenanceState) throw new MaintenanceError({ ...this.maintenanceState });
    const refusal = this.condition.refusal(this.session ? kind : 'write');
    if (refusal) throw refusal;
    if (!this.session) throw new StoreClosedError();
    return this.session;
  }

  private async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.control.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }

  private async read<T>(fn: (c: DuckDBConnection) => Promise<T>): Promise<T> {
    await this.readGate.pass();
    const { db } = this.available('read');
    const pending = withConnection(db, fn);
    this.reads.add(pending);
    try {
      return await pending;
    } catch (err) {
      throw this.failed(err, 'read');
    } finally {
      this.reads.delete(pending);
    }
  }
}
