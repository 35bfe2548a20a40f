/**
 * The node's database: the one DuckDB instance on <dataDir>/<database>.duckdb, the write lock,
 * and the operations the HTTP API exposes. Writes go through one connection under the lock;
 * reads each take a fresh connection so a long fingerprint never delays a write.
 */
import { mkdir, rename, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DuckDBTimestampValue, type DuckDBConnection, type DuckDBPreparedStatement } from '@duckdb/node-api';
import { checkpointFully, walBytes } from '../duckdb/checkpoint';
import { type Fingerprint, fingerprint } from '../duckdb/fingerprint';
import { type OpenDatabase, openDatabase, withConnection } from '../duckdb/open';
import { SET_STATE_SQL, STATE_EPOCH, STATE_LSN, UPDATE_LSN_SQL, ensureSchema, readPosition } from '../duckdb/schema';
import { copyFast, removeQuietly, tempPathFor } from './files';
import { type Logger, errorMessage, silentLogger } from './log';
import { Gate, Mutex, type Release } from './mutex';

/** Roles a node can have; replication will add more. */
export type NodeRole = 'primary';

/** What replication and fencing build on: kept together so they can grow together. */
export interface ReplicationState {
  role: NodeRole;
  epoch: number;
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
  ) {
    super(`lsn ${requested} is ahead of this node's lsn ${current}: rows up to it may still arrive`);
    this.name = 'LsnAheadError';
  }
}

const round = (ms: number): number => Math.round(ms * 10) / 10;

/** The checksum of one batch, inside its own transaction (same expression as fingerprintQuery). */
const BATCH_CHECKSUM_SQL = 'SELECT coalesce(sum(hash(e)), 0)::VARCHAR FROM events AS e WHERE e.lsn = $1';

export class EventStore {
  readonly state: ReplicationState;
  private readonly lock = new Mutex();
  /** Shut while a snapshot waits for running reads; see snapshot(). */
  private readonly readGate = new Gate();
  private readonly reads = new Set<Promise<unknown>>();
  private lastId: number;
  private currentLsn: number;
  private rowCount: number;
  /**
   * The fingerprint of everything committed, kept up to date by every append from the batch's
   * own rows (sum(hash(row)) adds up batch by batch). A snapshot reads it under the write lock
   * for free instead of scanning the table (~1.2 s/GiB); /stats still scans, so it audits this.
   */
  private running: {
    rows: number;
    minId: number | null;
    maxId: number | null;
    maxLsn: number | null;
    checksum: bigint;
  };
  private longestWriteWaitMs = 0;
  private closing: Promise<void> | undefined;
  /** Set once close() holds the lock: writes queued before close() still commit. */
  private closed = false;

  private constructor(
    private readonly db: OpenDatabase,
    private readonly writer: DuckDBConnection,
    private readonly updateLsn: DuckDBPreparedStatement,
    private readonly batchChecksum: DuckDBPreparedStatement,
    position: { lastId: number; lsn: number; rows: number; epoch: number },
    initial: Fingerprint,
    private readonly log: Logger,
  ) {
    this.lastId = position.lastId;
    this.currentLsn = position.lsn;
    this.rowCount = position.rows;
    this.running = { ...initial, checksum: BigInt(initial.checksum) };
    this.state = { role: 'primary', epoch: position.epoch };
  }

  /** Opens (or creates) the database file and resumes after its highest id and LSN. */
  static async open(path: string, log: Logger = silentLogger): Promise<EventStore> {
    await mkdir(dirname(path), { recursive: true });
    const db = await openDatabase(path);
    try {
      const writer = await db.connect();
      await ensureSchema(writer);
      const position = await readPosition(writer);
      // A database built by bulk SQL has no node_state yet; record where it stands.
      await writer.run(SET_STATE_SQL, [STATE_LSN, String(position.lsn)]);
      await writer.run(SET_STATE_SQL, [STATE_EPOCH, String(position.epoch)]);
      const updateLsn = await writer.prepare(UPDATE_LSN_SQL);
      const batchChecksum = await writer.prepare(BATCH_CHECKSUM_SQL);
      const initial = await fingerprint(writer);
      return new EventStore(db, writer, updateLsn, batchChecksum, position, initial, log);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  get path(): string {
    return this.db.path;
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

  /** Appends one batch in one transaction; resolves after COMMIT (which fsyncs the WAL). */
  async append(events: readonly NewEvent[]): Promise<AppendResult> {
    if (events.length === 0) throw new RangeError('a batch needs at least one event');
    // Serialize outside the lock: it is the costliest per-event work and needs no ordering.
    const rows = events.map((e) => ({ kind: e.kind, payload: JSON.stringify(e.payload) ?? 'null' }));
    const asked = performance.now();
    const release = await this.lock.acquire();
    this.longestWriteWaitMs = Math.max(this.longestWriteWaitMs, performance.now() - asked);
    try {
      if (this.closed) throw new StoreClosedError();
      const lsn = this.currentLsn + 1;
      const firstId = this.lastId + 1;
      const ts = new DuckDBTimestampValue(BigInt(Date.now()) * 1000n);
      await this.writer.run('BEGIN TRANSACTION');
      try {
        // The appender writes into the open transaction: rows and LSN commit together or not at all.
        const appender = await this.writer.createAppender('events');
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
        this.updateLsn.bindVarchar(1, String(lsn));
        await this.updateLsn.run();
        // Only the batch's own rows: zone maps on lsn skip everything older.
        this.batchChecksum.bindBigInt(1, lsnValue);
        const [batchSum] = (await this.batchChecksum.runAndReadAll()).getRows()[0] ?? [];
        await this.writer.run('COMMIT');
        this.running = {
          rows: this.running.rows + rows.length,
          minId: this.running.minId ?? firstId,
          maxId: firstId + rows.length - 1,
          maxLsn: lsn,
          checksum: this.running.checksum + BigInt(String(batchSum ?? '0')),
        };
      } catch (err) {
        await this.writer
          .run('ROLLBACK')
          .catch((rollbackErr: unknown) => this.log('rollback_failed', { error: errorMessage(rollbackErr) }));
        throw err;
      }
      this.currentLsn = lsn;
      this.lastId = firstId + rows.length - 1;
      this.rowCount += rows.length;
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
    const current = this.currentLsn;
    if (upToLsn !== undefined && upToLsn > current) throw new LsnAheadError(upToLsn, current);
    // Filtering by a committed LSN makes the numbers exact even while writes continue.
    const asOfLsn = upToLsn ?? current;
    const fp = await this.fingerprint(asOfLsn);
    const [bytes, wal] = await Promise.all([stat(this.path).then((s) => s.size), walBytes(this.path)]);
    return { lsn: current, asOfLsn, bytes, walBytes: wal, maxWriteStallMs: this.maxWriteStallMs, ...fp };
  }

  /**
   * Writes a consistent copy of the database to target (already validated by the caller).
   *
   * Never copies a live file (DESIGN rule 1): writes are paused by holding the write lock, a
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
      if (this.closed) throw new StoreClosedError();
      const checkpoint = await checkpointFully(this.writer, this.path);
      const checkpointMs = performance.now() - locked;
      if (checkpoint.attempts > 1) this.log('checkpoint_retried', { ...checkpoint });
      const lsn = this.currentLsn;
      const fingerprint = { ...this.running, checksum: this.running.checksum.toString() };
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
      try {
        await this.writer.run('CHECKPOINT');
      } catch (err) {
        // The WAL still holds the data and is replayed at the next open; closing must go on.
        this.log('checkpoint_on_close_failed', { error: errorMessage(err) });
      }
      this.writer.closeSync();
      this.db.close();
    } finally {
      release();
    }
  }

  private async read<T>(fn: (c: DuckDBConnection) => Promise<T>): Promise<T> {
    await this.readGate.pass();
    if (this.closed) throw new StoreClosedError();
    const pending = withConnection(this.db, fn);
    this.reads.add(pending);
    try {
      return await pending;
    } finally {
      this.reads.delete(pending);
    }
  }
}
