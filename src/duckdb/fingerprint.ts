/**
 * The content fingerprint of the events table: what a backup is verified against (DESIGN rule 2).
 *
 * `sum(hash(e))` hashes the whole row (the table alias stands for a struct of every column, so a
 * column added later is covered too) and sums rather than xors, so two identical rows do not
 * cancel out and the result does not depend on scan order. Page checksums only catch a block that
 * is damaged in place; a valid block in the wrong place, or a torn copy, only shows up as a
 * different fingerprint.
 *
 * The table is append-only and rows are immutable, so "the source as of LSN n" can be computed
 * later on the live database with `WHERE lsn <= n`, while writes continue.
 */
import type { DuckDBConnection } from '@duckdb/node-api';
import { STATE_CHECKSUM } from './schema';

export interface Fingerprint {
  rows: number;
  minId: number | null;
  maxId: number | null;
  maxLsn: number | null;
  /** sum(hash(row)) as a decimal string (a HUGEINT: too wide for a JS number). */
  checksum: string;
}

/** The fingerprint as one query; upToLsn limits it to rows of batches up to that LSN. */
export function fingerprintQuery(upToLsn?: number, afterLsn?: number): string {
  for (const [name, value] of [
    ['upToLsn', upToLsn],
    ['afterLsn', afterLsn],
  ] as const) {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) {
      throw new RangeError(`${name} must be a non-negative integer, got ${value}`);
    }
  }
  const conditions = [
    upToLsn === undefined ? undefined : `e.lsn <= ${upToLsn}`,
    afterLsn === undefined ? undefined : `e.lsn > ${afterLsn}`,
  ].filter(Boolean);
  const where = conditions.length ? ` WHERE ${conditions.join(' AND ')}` : '';
  // Everything is read as VARCHAR: BIGINT and HUGEINT would otherwise arrive as bigint, and the
  // child process that verifies files passes the row through JSON.
  return (
    'SELECT count(*)::VARCHAR AS "rows", min(e.id)::VARCHAR AS min_id, max(e.id)::VARCHAR AS max_id, ' +
    'max(e.lsn)::VARCHAR AS max_lsn, coalesce(sum(hash(e)), 0)::VARCHAR AS checksum ' +
    `FROM events AS e${where}`
  );
}

/**
 * The same columns, with the checksum the database recorded for itself (node_state.checksum, kept
 * by every append and every replayed batch in their own transactions) instead of hashing every
 * row: a few cheap aggregates over two integer columns. Null checksum: nothing recorded (a file
 * built by bulk SQL); fingerprint it in full.
 */
export const RECORDED_FINGERPRINT_SQL =
  'SELECT count(*)::VARCHAR AS "rows", min(e.id)::VARCHAR AS min_id, max(e.id)::VARCHAR AS max_id, ' +
  `max(e.lsn)::VARCHAR AS max_lsn, (SELECT value FROM node_state WHERE key = '${STATE_CHECKSUM}') AS checksum ` +
  'FROM events AS e';

/** The row fingerprintQuery returns, as plain strings (or null on an empty table). */
export type FingerprintRow = Record<'rows' | 'min_id' | 'max_id' | 'max_lsn' | 'checksum', string | null>;

function toNumber(value: string | null, column: string): number | null {
  if (value === null) return null;
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new Error(`fingerprint column ${column} is not a safe integer: ${value}`);
  return n;
}

/** Turns the query's row into a Fingerprint, refusing anything that does not look like one. */
export function parseFingerprintRow(row: Partial<Record<string, unknown>>): Fingerprint {
  const text = (column: string): string | null => {
    const value = row[column];
    if (value === null || value === undefined) return null;
    if (typeof value !== 'string') throw new Error(`fingerprint column ${column} is not text: ${String(value)}`);
    return value;
  };
  const checksum = text('checksum');
  if (checksum === null || !/^-?\d+$/.test(checksum)) {
    throw new Error(`fingerprint checksum is not a decimal number: ${String(checksum)}`);
  }
  return {
    rows: toNumber(text('rows'), 'rows') ?? 0,
    minId: toNumber(text('min_id'), 'min_id'),
    maxId: toNumber(text('max_id'), 'max_id'),
    maxLsn: toNumber(text('max_lsn'), 'max_lsn'),
    checksum,
  };
}

/** Fingerprint of the rows with afterLsn < lsn ≤ upToLsn (each bound optional). */
export async function fingerprint(
  connection: DuckDBConnection,
  upToLsn?: number,
  afterLsn?: number,
): Promise<Fingerprint> {
  const reader = await connection.runAndReadAll(fingerprintQuery(upToLsn, afterLsn));
  const row = reader.getRowObjectsJS()[0];
  if (!row) throw new Error('fingerprint query returned no row');
  return parseFingerprintRow(row);
}

/** The fingerprint with the recorded checksum, or undefined when the file recorded none. */
export async function recordedFingerprint(connection: DuckDBConnection): Promise<Fingerprint | undefined> {
  const row = (await connection.runAndReadAll(RECORDED_FINGERPRINT_SQL)).getRowObjectsJS()[0];
  if (!row) throw new Error('fingerprint query returned no row');
  return row.checksum === null ? undefined : parseFingerprintRow(row);
}
