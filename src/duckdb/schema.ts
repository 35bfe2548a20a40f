/**
 * The kimiclaw schema. `events` is append-only and is its own log: every row carries the LSN of
 * the batch that wrote it, so "everything after LSN n" and "the table as of LSN n" are queries.
 *
 * No PRIMARY KEY on events.id: ids are assigned by the one writer (monotonic by construction), and
 * an ART index would slow every bulk insert and grow the file for a uniqueness check that can
 * never fire. `node_state` is tiny and keyed, and is updated in the same transaction as each
 * batch, so the recorded LSN can never disagree with the rows.
 */
import type { DuckDBConnection } from '@duckdb/node-api';
import { CURRENT_FINGERPRINT_VERSION, checksumSumSql } from './row-checksum';

export const EVENT_COLUMNS = [
  { name: 'id', type: 'BIGINT' },
  { name: 'lsn', type: 'BIGINT' },
  { name: 'ts', type: 'TIMESTAMP' },
  { name: 'kind', type: 'VARCHAR' },
  { name: 'payload', type: 'VARCHAR' },
] as const;

export const CREATE_EVENTS_SQL = `CREATE TABLE IF NOT EXISTS events (
  id BIGINT NOT NULL,
  lsn BIGINT NOT NULL,
  ts TIMESTAMP NOT NULL,
  kind VARCHAR NOT NULL,
  payload VARCHAR NOT NULL
)`;

export const CREATE_NODE_STATE_SQL = `CREATE TABLE IF NOT EXISTS node_state (
  key VARCHAR PRIMARY KEY,
  value VARCHAR NOT NULL
)`;

/** Keys of node_state. */
export const STATE_LSN = 'lsn';
export const STATE_EPOCH = 'epoch';
/** 'primary' | 'replica' | 'fenced': the role the node resumes in after a restart. */
export const STATE_ROLE = 'role';
/** JSON [{ epoch, startLsn }]: where each primary epoch this node knows of began. */
export const STATE_HISTORY = 'history';
/** The content checksum of every event, as decimal text; see RECORDED_FINGERPRINT_SQL. */
export const STATE_CHECKSUM = 'checksum';
/** Which fingerprint version STATE_CHECKSUM follows (row-checksum.ts); absent: version 1. */
export const STATE_FINGERPRINT_VERSION = 'fingerprint_version';
/**
 * The highest LSN the node knew to be acknowledged at its last role change (a fenced node serves
 * no further, GET /events); absent: 0.
 */
export const STATE_ACKED_LSN = 'acked_lsn';
/**
 * The highest event id ever assigned in this history, when it is above max(events.id): a restore
 * that left batches out keeps their ids (and LSNs) used, so no id is acknowledged for two events.
 */
export const STATE_LAST_ID = 'last_id';

/**
 * Adds the rows of batches firstLsn..lastLsn ($1, $2) to the recorded checksum, inside the batch's
 * transaction, in the current fingerprint version: the recorded checksum must already be in it
 * (applyEvents checks). No-op for a file without a recorded checksum (it is fingerprinted in full
 * at open).
 */
export const ADD_TO_CHECKSUM_SQL = `UPDATE node_state
  SET value = (value::HUGEINT + (SELECT ${checksumSumSql(CURRENT_FINGERPRINT_VERSION, 'e')} FROM events AS e WHERE e.lsn BETWEEN $1::BIGINT AND $2::BIGINT))::VARCHAR
  WHERE key = '${STATE_CHECKSUM}'`;

/** Sets the recorded checksum (the node keeps the running value in memory). */
export const UPDATE_CHECKSUM_SQL = `UPDATE node_state SET value = $1 WHERE key = '${STATE_CHECKSUM}'`;

/** Upserts one node_state key. */
export const SET_STATE_SQL = 'INSERT OR REPLACE INTO node_state (key, value) VALUES ($1, $2)';

/**
 * Records the batch LSN inside the batch's transaction. A prepared UPDATE of the existing row
 * costs ~0.6 ms; the upsert above ~3.7 ms, which was a third of the per-batch cost.
 */
export const UPDATE_LSN_SQL = `UPDATE node_state SET value = $1 WHERE key = '${STATE_LSN}'`;

/** A database whose events table is not the kimiclaw one: the node cannot run on it. */
export class SchemaMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SchemaMismatchError';
  }
}

/** Creates the tables if missing and refuses a file whose events table has another shape. */
export async function ensureSchema(connection: DuckDBConnection): Promise<void> {
  await connection.run(CREATE_EVENTS_SQL);
  await connection.run(CREATE_NODE_STATE_SQL);
  const reader = await connection.runAndReadAll(
    `SELECT column_name, data_type FROM information_schema.columns
     WHERE table_schema = 'main' AND table_name = 'events' ORDER BY ordinal_position`,
  );
  const actual = reader.getRows().map(([name, type]) => `${String(name)} ${String(type)}`);
  const expected = EVENT_COLUMNS.map((c) => `${c.name} ${c.type}`);
  if (actual.join(', ') !== expected.join(', ')) {
    throw new SchemaMismatchError(
      `the events table has columns (${actual.join(', ')}); expected (${expected.join(', ')})`,
    );
  }
}

export interface StoredPosition {
  /** Highest id in events, 0 when empty. */
  lastId: number;
  /** Highest LSN recorded, 0 when nothing was written. */
  lsn: number;
  rows: number;
  /** Fencing epoch, 1 for a database that never saw a failover. */
  epoch: number;
}

/**
 * Where the writer resumes. Both the rows and node_state are consulted: a database built by bulk
 * SQL (the generator, a restore from elsewhere) may lack node_state, and node_state alone would
 * not reveal ids.
 */
export async function readPosition(connection: DuckDBConnection): Promise<StoredPosition> {
  const reader = await connection.runAndReadAll(
    `SELECT
       coalesce(max(id), 0)::VARCHAR,
       coalesce(max(lsn), 0)::VARCHAR,
       count(*)::VARCHAR,
       (SELECT value FROM node_state WHERE key = '${STATE_LSN}'),
       (SELECT value FROM node_state WHERE key = '${STATE_EPOCH}'),
       (SELECT value FROM node_state WHERE key = '${STATE_LAST_ID}')
     FROM events`,
  );
  const [lastId, maxLsn, rows, stateLsn, stateEpoch, stateLastId] = (reader.getRows()[0] ?? []).map((v) =>
    v === null || v === undefined ? undefined : Number(v),
  );
  return {
    lastId: Math.max(lastId ?? 0, stateLastId ?? 0),
    lsn: Math.max(maxLsn ?? 0, stateLsn ?? 0),
    rows: rows ?? 0,
    epoch: stateEpoch ?? 1,
  };
}
