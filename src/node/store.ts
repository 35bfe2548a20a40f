/**
 * The node's database: the one DuckDB instance on <dataDir>/<database>.duckdb, the write lock,
 * and the operations the HTTP API exposes. Writes go through one connection under the lock;
 * reads each take a fresh connection so a long fingerprint never delays a write.
 *
 * Maintenance mode closes the file (so a restore can put another file in its place) and reopens
 * whatever is at the path afterwards. Everything that opens or closes the file does so holding
 * the write lock, after the running reads have ended, so no write or read ever sees a half-open
 * store.
 */
import { type Stats } from 'node:fs';
import { mkdir, rename, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  DuckDBBlobValue,
  DuckDBTimestampValue,
  type DuckDBConnection,
  type DuckDBPreparedStatement,
} from '@duckdb/node-api';
import { checkpointFully, walBytes } from '../duckdb/checkpoint';
import {
  type CurrentFingerprint,
  type Fingerprint,
  currentRecordedFingerprint,
  fingerprint,
} from '../duckdb/fingerprint';
import { type OpenDatabase, openDatabase, withConnection } from '../duckdb/open';
import { type LogEvent, TS_ISO_SQL_FORMAT, applyEvents, formatIsoMicros } from '../duckdb/replay';
import { CURRENT_FINGERPRINT_VERSION, checksumSumSql } from '../duckdb/row-checksum';
import {
  SET_STATE_SQL,
  STATE_CHECKSUM,
  STATE_EPOCH,
  STATE_HISTORY,
  STATE_LSN,
  STATE_ROLE,
  UPDATE_CHECKSUM_SQL,
  type StoredPosition,
  UPDATE_LSN_SQL,
  ensureSchema,
  readPosition,
} from '../duckdb/schema';
import { copyFast, removeQuietly, tempPathFor } from './files';
import { type Logger, errorMessage, silentLogger } from './log';
import { Gate, Mutex, type Release } from './mutex';

/**
 * primary: accepts writes and replicates them. replica: applies what its primary sends.
 * fenced: a former primary that learnt of a newer epoch; refuses writes until it rejoins.
 */
export type NodeRole = 'primary' | 'replica' | 'fenced';
export const NODE_ROLES: readonly NodeRole[] = ['primary', 'replica', 'fenced'];

/** Where a primary epoch began: the LSN its primary had reached when it was promoted. */
export interface EpochStart {
  epoch: number;
  startLsn: number;
}

/** Role, fencing epoch and epoch history, kept in node_state so a restart resumes them. */
export interface ReplicationState {
  role: NodeRole;
  epoch: number;
  history: EpochStart[];
}

/** A committed batch as replication sends it. */
export interface CommittedBatch {
  lsn: number;
  events: LogEvent[];
}

/** Writes go to the primary only. */
export class NotPrimaryError extends Error {
  constructor(readonly state: ReplicationState) {
    super(
      state.role === 'fenced'
        ? `this node was primary of epoch ${state.epoch} and has been fenced: a newer primary exists; it accepts no writes until it rejoins as a replica`
        : `this node is a ${state.role} (epoch ${state.epoch}); send writes to the primary`,
    );
    this.name = 'NotPrimaryError';
  }
}

/** Replicated events that do not follow on from what this node has. */
export class ReplicationGapError extends Error {
  constructor(
    readonly expectedLsn: number,
    readonly gotLsn: number,
  ) {
    super(
      `replicated events start at LSN ${gotLsn}; this node has LSN ${expectedLsn - 1} and needs ${expectedLsn} next`,
    );
    this.name = 'ReplicationGapError';
  }
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

export interface MaintenanceState {
  reason: string | null;
  /** ISO time maintenance was entered. */
  since: string;
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

export class StoreClosedError extends Error {
  constructor() {
    super('the database is closed (the node is stopping)');
    this.name = 'StoreClosedError';
  }
}

export class LsnAheadError extends Error {
  constructor(
    readonly requested: number,
    readonly current: number,
    /** The request field that carried the LSN. */
    readonly field = 'lsn',
  ) {
    super(`${field} ${requested} is ahead of this node's lsn ${current}: rows up to it may still arrive`);
    this.name = 'LsnAheadError';
  }
}

/** The node is in maintenance: its file is closed, so nothing can be read or written. */
export class MaintenanceError extends Error {
  constructor(readonly state: MaintenanceState) {
    super(MaintenanceError.describe('the node', state));
    this.name = 'MaintenanceError';
  }

  /** The message, naming the node. */
  static describe(node: string, state: MaintenanceState): string {
    return (
      `${node} is in maintenance since ${state.since}${state.reason ? ` (reason: ${state.reason})` : ''}: ` +
      'its database file is closed; it accepts writes and reads again after POST /maintenance { "enabled": false }'
    );
  }
}

/** Leaving maintenance found no file at the database path (and allowEmpty was not given). */
export class DatabaseMissingError extends Error {
  constructor(readonly path: string) {
    super(
      `${path} does not exist; put the database file there, or pass "allowEmpty": true to start an empty ` +
        'database; the node stays in maintenance',
    );
    this.name = 'DatabaseMissingError';
  }
}

/** Leaving maintenance found a WAL that does not belong to the file now at the path. */
export class StaleWalError extends Error {
  constructor(
    readonly path: string,
    readonly bytes: number,
  ) {
    super(
      `${path} (${bytes} bytes) is not the WAL this node left when it closed the database; DuckDB would replay ` +
        'it onto the file now in place and mix in foreign rows. Move it aside (or remove it); the node stays in maintenance',
    );
    this.name = 'StaleWalError';
  }
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

/** The checksum of one batch, inside its own transaction (the same rows fingerprintQuery hashes). */
const BATCH_CHECKSUM_SQL = `SELECT ${checksumSumSql(CURRENT_FINGERPRINT_VERSION, 'e')}::VARCHAR FROM events AS e WHERE e.lsn = $1`;

/** The open file: the instance, the writer connection and its prepared statements. */
interface Session {
  db: OpenDatabase;
  writer: DuckDBConnection;
  updateLsn: DuckDBPreparedStatement;
  updateChecksum: DuckDBPreparedStatement;
  batchChecksum: DuckDBPreparedStatement;
}

interface Opened {
  session: Session;
  position: StoredPosition;
  /** The file's fingerprint, and whether opening had to compute it (CurrentFingerprint). */
  initial: CurrentFingerprint;
  /** Role and history as stored; undefined for a file no node has run on. */
  role: NodeRole | undefined;
  history: EpochStart[];
}

async function readRoleState(c: DuckDBConnection): Promise<{ role: NodeRole | undefined; history: EpochStart[] }> {
  const rows = (
    await c.runAndReadAll(`SELECT key, value FROM node_state WHERE key IN ('${STATE_ROLE}', '${STATE_HISTORY}')`)
  ).getRows();
  const values = new Map(rows.map(([k, v]) => [String(k), String(v)]));
  const role = values.get(STATE_ROLE);
  const history = values.has(STATE_HISTORY) ? (JSON.parse(values.get(STATE_HISTORY)!) as EpochStart[]) : [];
  return { role: NODE_ROLES.includes(role as NodeRole) ? (role as NodeRole) : undefined, history };
}

/** What the file and its WAL looked like when maintenance closed them (dev:ino:size:mtime). */
interface ClosedFiles {
  db: string | null;
  wal: string | null;
}

async function identity(path: string): Promise<string | null> {
  const info: Stats | undefined = await stat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  return info ? `${info.dev}:${info.ino}:${info.size}:${info.mtimeMs}` : null;
}

/** Opens (or creates) the file, checks the schema, and reads where it stands. */
async function openSession(path: string): Promise<Opened> {
  await mkdir(dirname(path), { recursive: true });
  const db = await openDatabase(path);
  try {
    const writer = await db.connect();
    await ensureSchema(writer);
    const position = await readPosition(writer);
    // A database built by bulk SQL has no node_state yet; record where it stands.
    await writer.run(SET_STATE_SQL, [STATE_LSN, String(position.lsn)]);
    await writer.run(SET_STATE_SQL, [STATE_EPOCH, String(position.epoch)]);
    // The checksum every append keeps in node_state makes opening O(1); a file without one (built
    // by bulk SQL), or with one in an older fingerprint version, is fingerprinted once, and from
    // then on keeps it.
    const initial = await currentRecordedFingerprint(writer);
    const updateLsn = await writer.prepare(UPDATE_LSN_SQL);
    const updateChecksum = await writer.prepare(UPDATE_CHECKSUM_SQL);
    const batchChecksum = await writer.prepare(BATCH_CHECKSUM_SQL);
    const { role, history } = await readRoleState(writer);
    return { session: { db, writer, updateLsn, updateChecksum, batchChecksum }, position, initial, role, history };
  } catch (err) {
    try {
      db.close();
    } catch {
      // The open failure is the news; a close failure keeps the path registered (never reopened).
    }
    throw err;
  }
}

/** Closes the session; the caller holds the write lock and no read is running. */
async function closeSession(session: Session, path: string, log: Logger): Promise<void> {
  try {
    const result = await checkpointFully(session.writer, path);
    if (result.attempts > 1) log('checkpoint_retried', { ...result });
  } catch (err) {
    // The WAL still holds the data and is replayed at the next open; closing must go on.
    log('checkpoint_on_close_failed', { error: errorMessage(err) });
  }
  session.writer.closeSync();
  session.db.close();
}

export class EventStore {
  readonly state: ReplicationState;
  /** The database file (its directory's symlinks resolved). */
  readonly path: string;
  private readonly lock = new Mutex();
  /** Serializes entering and leaving maintenance. */
  private readonly control = new Mutex();
  /** Shut while a snapshot waits for running reads; see snapshot(). */
  private readonly readGate = new Gate();
  private readonly reads = new Set<Promise<unknown>>();
  /** The open file; undefined in maintenance and after close(). */
  private session: Session | undefined;
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

  /** Called after each local commit, under the write lock, in LSN order (replication). */
  onCommit: ((batch: CommittedBatch) => void) | undefined;

  private constructor(
    opened: Opened,
    private readonly log: Logger,
    initialRole: NodeRole,
  ) {
    this.path = opened.session.db.path;
    this.state = { role: opened.role ?? initialRole, epoch: opened.position.epoch, history: opened.history };
    this.adopt(opened);
  }

  /**
   * Opens (or creates) the database file and resumes after its highest id and LSN, in the role
   * stored in the file; `role` applies to a file no node has run on yet (default primary).
   */
  static async open(path: string, log: Logger = silentLogger, options: { role?: NodeRole } = {}): Promise<EventStore> {
    const store = new EventStore(await openSession(path), log, options.role ?? 'primary');
    await store.setReplicationState(store.state);
    return store;
  }

  /** Stores role, epoch and history (under the write lock, in one transaction). */
  async setReplicationState(next: ReplicationState): Promise<void> {
    const release = await this.lock.acquire();
    try {
      await this.persistReplicationState(next);
    } finally {
      release();
    }
  }

  /**
   * Holds writes back, runs drain (which waits for what is committed to reach a replica), then
   * stores the new state, all under the write lock: no write commits between the drain and the
   * role change. Writes queued meanwhile find the node no longer primary.
   */
  async stepDown(next: ReplicationState, drain: () => Promise<boolean>): Promise<boolean> {
    const release = await this.lock.acquire();
    try {
      const drained = await drain();
      await this.persistReplicationState(next);
      return drained;
    } finally {
      release();
    }
  }

  private async persistReplicationState(next: ReplicationState): Promise<void> {
    const { writer } = this.opened();
    await writer.run('BEGIN TRANSACTION');
    try {
      await writer.run(SET_STATE_SQL, [STATE_ROLE, next.role]);
      await writer.run(SET_STATE_SQL, [STATE_EPOCH, String(next.epoch)]);
      await writer.run(SET_STATE_SQL, [STATE_HISTORY, JSON.stringify(next.history)]);
      await writer.run('COMMIT');
    } catch (err) {
      await writer.run('ROLLBACK').catch(() => undefined);
      throw err;
    }
    this.state.role = next.role;
    this.state.epoch = next.epoch;
    this.state.history = next.history.map((h) => ({ ...h }));
    this.log('replication_state', { role: next.role, epoch: next.epoch, lsn: this.currentLsn });
  }

  /**
   * Applies batches a primary replicated (ids, LSNs and timestamps as the primary gave them), in
   * one transaction with node_state. Events this node already has (lsn <= its LSN) are skipped, so
   * a resend after a lost answer is harmless; events that do not follow on are refused.
   */
  async applyReplicated(events: readonly LogEvent[]): Promise<{ applied: number; lsn: number }> {
    const release = await this.lock.acquire();
    try {
      const { writer } = this.opened();
      if (this.state.role !== 'replica') throw new NotPrimaryError(this.state);
      const fresh = events.filter((e) => e.lsn > this.currentLsn);
      const first = fresh[0];
      const last = fresh[fresh.length - 1];
      if (!first || !last) return { applied: 0, lsn: this.currentLsn };
      if (first.lsn !== this.currentLsn + 1) throw new ReplicationGapError(this.currentLsn + 1, first.lsn);
      await applyEvents(writer, fresh);
      const [checksum] = (
        await writer.runAndReadAll(`SELECT value FROM node_state WHERE key = '${STATE_CHECKSUM}'`)
      ).getRows()[0] ?? [null];
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
      return { applied: fresh.length, lsn: this.currentLsn };
    } finally {
      release();
    }
  }

  /**
   * Removes the events after lsn: the tail a former primary (or an asynchronous replica) holds
   * beyond the point where a newer epoch began. No client was told those writes succeeded: an
   * acknowledgement needs the synchronous replica, and the new epoch starts from it.
   */
  async truncateAfter(lsn: number): Promise<{ removed: number; lsn: number }> {
    const release = await this.lock.acquire();
    try {
      const { writer } = this.opened();
      if (this.state.role === 'primary') throw new Error('a primary never discards its own events');
      if (lsn >= this.currentLsn) return { removed: 0, lsn: this.currentLsn };
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
        await writer.run('COMMIT');
      } catch (err) {
        await writer.run('ROLLBACK').catch(() => undefined);
        throw err;
      }
      await writer.run('CHECKPOINT');
      const position = await readPosition(writer);
      const { fingerprint: fp } = await currentRecordedFingerprint(writer);
      this.lastId = position.lastId;
      this.currentLsn = position.lsn;
      this.rowCount = position.rows;
      this.running = runningOf(fp);
      this.log('truncated', { afterLsn: lsn, removed });
      return { removed, lsn: this.currentLsn };
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

  /** Appends one batch in one transaction; resolves after COMMIT (which fsyncs the WAL). */
  async append(events: readonly NewEvent[]): Promise<AppendResult> {
    if (events.length === 0) throw new RangeError('a batch needs at least one event');
    // Serialize outside the lock: it is the costliest per-event work and needs no ordering.
    const rows = events.map((e) => ({ kind: e.kind, payload: JSON.stringify(e.payload) ?? 'null' }));
    // Refused before queuing: only writes already queued when maintenance began still commit.
    this.available();
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
      await writer.run('BEGIN TRANSACTION');
      try {
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
        throw err;
      }
      this.currentLsn = lsn;
      this.lastId = firstId + rows.length - 1;
      this.rowCount += rows.length;
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
    this.available();
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
    this.available();
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
    this.available();
    const started = performance.now();
    await mkdir(dirname(target), { recursive: true });
    const tmp = tempPathFor(target);
    let copy: Awaited<ReturnType<EventStore['copyWithWritesPaused']>>;
    try {
      copy = await this.copyWithWritesPaused(tmp);
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
      const checkpoint = await checkpointFully(writer, this.path);
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
   * updates the reason (when one is given).
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
      const release = await this.lock.acquire();
      try {
        const session = this.session;
        if (this.closed || !session) throw new StoreClosedError();
        await Promise.allSettled([...this.reads]);
        this.session = undefined;
        await closeSession(session, this.path, this.log);
        const [db, wal] = await Promise.all([identity(this.path), identity(`${this.path}.wal`)]);
        this.closedFiles = { db, wal };
        this.log('maintenance_on', {
          reason: state.reason,
          lsn: this.currentLsn,
          rows: this.rowCount,
          walBytes: await walBytes(this.path),
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
   * (StaleWalError). Not in maintenance: nothing to do.
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
        const [db, wal] = await Promise.all([identity(this.path), identity(walPath)]);
        if (db === null && !options.allowEmpty) throw new DatabaseMissingError(this.path);
        const walSize = await walBytes(this.path);
        if (walSize > 0 && !(wal === this.closedFiles?.wal && db === this.closedFiles.db)) {
          throw new StaleWalError(walPath, walSize);
        }
        const opened = await openSession(this.path);
        // A restored file carries the epoch of its source; this node's own epoch never goes back.
        this.state.epoch = Math.max(this.state.epoch, opened.position.epoch);
        this.adopt(opened);
        await opened.session.writer.run(SET_STATE_SQL, [STATE_EPOCH, String(this.state.epoch)]);
        await opened.session.writer.run(SET_STATE_SQL, [STATE_ROLE, this.state.role]);
        await opened.session.writer.run(SET_STATE_SQL, [STATE_HISTORY, JSON.stringify(this.state.history)]);
        const reason = this.maintenanceState.reason;
        this.maintenanceState = undefined;
        this.closedFiles = undefined;
        this.log('maintenance_off', {
          reason,
          created: db === null,
          lsn: this.currentLsn,
          rows: this.rowCount,
          checksum: this.running.checksum.toString(),
        });
        return done(db === null);
      } finally {
        release();
      }
    });
  }

  /** Lets queued writes finish, checkpoints, and closes the file. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    // FIFO lock: every write queued before close() commits before this runs.
    const release = await this.lock.acquire();
    this.closed = true;
    try {
      await Promise.allSettled([...this.reads]);
      const session = this.session;
      this.session = undefined;
      if (session) await closeSession(session, this.path, this.log);
    } finally {
      release();
    }
  }

  /** Takes over a freshly opened file: its position and fingerprint become the store's. */
  private adopt({ session, position, initial }: Opened): void {
    this.session = session;
    this.lastId = position.lastId;
    this.currentLsn = position.lsn;
    this.rowCount = position.rows;
    this.running = runningOf(initial.fingerprint);
    if (initial.upgradedFrom !== undefined) {
      this.log('fingerprint_recorded', {
        fingerprintVersion: initial.fingerprint.fingerprintVersion,
        previousVersion: initial.upgradedFrom,
        rows: initial.fingerprint.rows,
      });
    }
  }

  private runningFingerprint(): Fingerprint {
    return {
      ...this.running,
      checksum: this.running.checksum.toString(),
      fingerprintVersion: CURRENT_FINGERPRINT_VERSION,
    };
  }

  /** For work already admitted (holding the lock): the open session, or why the file is closed. */
  private opened(): Session {
    if (this.session && !this.closed) return this.session;
    if (this.closed || !this.maintenanceState) throw new StoreClosedError();
    throw new MaintenanceError({ ...this.maintenanceState });
  }

  /** For new work: the open session, or why none is admitted (stopping, maintenance). */
  private available(): Session {
    if (this.closed) throw new StoreClosedError();
    if (this.maintenanceState) throw new MaintenanceError({ ...this.maintenanceState });
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
    const { db } = this.available();
    const pending = withConnection(db, fn);
    this.reads.add(pending);
    try {
      return await pending;
    } finally {
      this.reads.delete(pending);
    }
  }
}
