/**
 * The content fingerprint of the events table: what a backup is verified against. Rows, ids and
 * LSNs say the extent of the data; the checksum (row-checksum.ts) says its content. Page checksums
 * only catch a block that is damaged in place; a valid block in the wrong place, or a torn copy,
 * only shows up as a different fingerprint.
 *
 * The table is append-only and rows are immutable, so "the source as of LSN n" can be computed
 * later on the live database with `WHERE lsn <= n`, while writes continue.
 */
import type { DuckDBConnection } from '@duckdb/node-api';
import {
  CURRENT_FINGERPRINT_VERSION,
  type FingerprintVersion,
  checksumSumSql,
  parseFingerprintVersion,
} from './row-checksum';
import { SET_STATE_SQL, STATE_CHECKSUM, STATE_FINGERPRINT_VERSION } from './schema';

/** The extent of the data: what can be compared even when no checksum can be. */
export interface FingerprintShape {
  rows: number;
  minId: number | null;
  maxId: number | null;
  maxLsn: number | null;
}

export interface Fingerprint extends FingerprintShape {
  /** The content checksum as a decimal string (a HUGEINT: too wide for a JS number). */
  checksum: string;
  /** Which definition the checksum follows: checksums of different versions never compare. */
  fingerprintVersion: FingerprintVersion;
}

const SHAPE_COLUMNS =
  'count(*)::VARCHAR AS "rows", min(e.id)::VARCHAR AS min_id, max(e.id)::VARCHAR AS max_id, ' +
  'max(e.lsn)::VARCHAR AS max_lsn';

/**
 * The fingerprint as one query, in the given version (default: the current one); upToLsn and
 * afterLsn limit it to rows of batches afterLsn < lsn <= upToLsn.
 */
export function fingerprintQuery(
  upToLsn?: number,
  afterLsn?: number,
  version: FingerprintVersion = CURRENT_FINGERPRINT_VERSION,
): string {
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
    `SELECT ${SHAPE_COLUMNS}, ${checksumSumSql(version, 'e')}::VARCHAR AS checksum, ` +
    `'${version}' AS fingerprint_version FROM events AS e${where}`
  );
}

/** Rows, ids and LSNs alone: cheap, and what is left to compare when a checksum cannot be. */
export const SHAPE_SQL = `SELECT ${SHAPE_COLUMNS} FROM events AS e`;

/**
 * The same columns, with the checksum the database recorded for itself (node_state, kept by every
 * append and every replayed batch in their own transactions) and its version, instead of hashing
 * every row: a few cheap aggregates over two integer columns. Null checksum: nothing recorded (a
 * file built by bulk SQL); fingerprint it in full.
 */
export const RECORDED_FINGERPRINT_SQL =
  `SELECT ${SHAPE_COLUMNS}, ` +
  `(SELECT value FROM node_state WHERE key = '${STATE_CHECKSUM}') AS checksum, ` +
  `(SELECT value FROM node_state WHERE key = '${STATE_FINGERPRINT_VERSION}') AS fingerprint_version ` +
  'FROM events AS e';

function toNumber(value: string | null, column: string): number | null {
  if (value === null) return null;
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new Error(`fingerprint column ${column} is not a safe integer: ${value}`);
  return n;
}

function textColumns(row: Partial<Record<string, unknown>>): (column: string) => string | null {
  return (column) => {
    const value = row[column];
    if (value === null || value === undefined) return null;
    if (typeof value !== 'string') throw new Error(`fingerprint column ${column} is not text: ${String(value)}`);
    return value;
  };
}

/** Rows, ids and LSNs from a row of SHAPE_SQL (or any fingerprint query). */
export function parseShapeRow(row: Partial<Record<string, unknown>>): FingerprintShape {
  const text = textColumns(row);
  return {
    rows: toNumber(text('rows'), 'rows') ?? 0,
    minId: toNumber(text('min_id'), 'min_id'),
    maxId: toNumber(text('max_id'), 'max_id'),
    maxLsn: toNumber(text('max_lsn'), 'max_lsn'),
  };
}

/**
 * Turns a fingerprint query's row into a Fingerprint, refusing anything that does not look like
 * one. A row without fingerprint_version is version 1 (recorded before versions were).
 */
export function parseFingerprintRow(row: Partial<Record<string, unknown>>): Fingerprint {
  const text = textColumns(row);
  const checksum = text('checksum');
  if (checksum === null || !/^-?\d+$/.test(checksum)) {
    throw new Error(`fingerprint checksum is not a decimal number: ${String(checksum)}`);
  }
  return {
    ...parseShapeRow(row),
    checksum,
    fingerprintVersion: parseFingerprintVersion(text('fingerprint_version')),
  };
}

/** Fingerprint of the rows with afterLsn < lsn ≤ upToLsn (each bound optional). */
export async function fingerprint(
  connection: DuckDBConnection,
  upToLsn?: number,
  afterLsn?: number,
  version: FingerprintVersion = CURRENT_FINGERPRINT_VERSION,
): Promise<Fingerprint> {
  const reader = await connection.runAndReadAll(fingerprintQuery(upToLsn, afterLsn, version));
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

export interface CurrentFingerprint {
  fingerprint: Fingerprint;
  /**
   * Set when the file did not record a checksum in the current version, so it was computed now:
   * the version it had recorded, or null for none.
   */
  upgradedFrom?: FingerprintVersion | null;
}

/**
 * The file's recorded fingerprint in the current version. A file that recorded none, or one in an
 * older version, is fingerprinted in full once and the result recorded with its version (one
 * transaction, so the checksum and its version never disagree); from then on every append keeps
 * it. The connection must not be inside a transaction.
 */
export async function currentRecordedFingerprint(connection: DuckDBConnection): Promise<CurrentFingerprint> {
  const recorded = await recordedFingerprint(connection);
  if (recorded?.fingerprintVersion === CURRENT_FINGERPRINT_VERSION) return { fingerprint: recorded };
  await connection.run('BEGIN TRANSACTION');
  try {
    const computed = await fingerprint(connection);
    await connection.run(SET_STATE_SQL, [STATE_CHECKSUM, computed.checksum]);
    await connection.run(SET_STATE_SQL, [STATE_FINGERPRINT_VERSION, String(computed.fingerprintVersion)]);
    await connection.run('COMMIT');
    return { fingerprint: computed, upgradedFrom: recorded?.fingerprintVersion ?? null };
  } catch (err) {
    await connection.run('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** Rows, ids and LSNs that differ, as readable text; empty when equal. */
export function shapeDifferences(expected: FingerprintShape, actual: FingerprintShape): string[] {
  const fields: Array<keyof FingerprintShape> = ['rows', 'minId', 'maxId', 'maxLsn'];
  return fields
    .filter((f) => expected[f] !== actual[f])
    .map((f) => `${f}: expected ${formatValue(expected[f])}, found ${formatValue(actual[f])}`);
}

/**
 * Compares two fingerprints; returns the differences as readable text, empty when equal. The
 * checksum is compared only within one version, and the message names it.
 */
export function fingerprintDifferences(expected: Fingerprint, actual: Fingerprint): string[] {
  const differences = shapeDifferences(expected, actual);
  if (expected.fingerprintVersion !== actual.fingerprintVersion) {
    differences.push(
      `fingerprintVersion: expected ${expected.fingerprintVersion}, found ${actual.fingerprintVersion} ` +
        '(checksums of different versions cannot be compared)',
    );
  } else if (expected.checksum !== actual.checksum) {
    differences.push(
      `checksum (fingerprint v${expected.fingerprintVersion}): expected ${expected.checksum}, found ${actual.checksum}`,
    );
  }
  return differences;
}

function formatValue(v: number | string | null): string {
  return typeof v === 'number' ? v.toLocaleString('en-US') : String(v);
}
