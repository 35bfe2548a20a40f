/**
 * Replaying the log: the events table is its own log, and `GET /events` pages it out as
 * `{ id, lsn, ts, kind, payload }` rows. applyEvents appends such rows to another database exactly
 * as given (same ids, LSNs, microsecond timestamps and stored text), so the target's fingerprint
 * (see fingerprint.ts) matches the source's over the same LSNs. This is the insert
 * path of point-in-time restore (a snapshot plus the archived log after its LSN) and of replicas.
 *
 * Timestamps travel as ISO strings with microseconds ("2026-11-26T03:00:00.123456Z"): DuckDB's
 * TIMESTAMP has microsecond resolution and a JS Date only milliseconds, so they are parsed here to
 * integer microseconds and never go through a Date value.
 */
import { type DuckDBConnection, DuckDBTimestampValue } from '@duckdb/node-api';
import { CURRENT_FINGERPRINT_VERSION, parseFingerprintVersion } from './row-checksum';
import { ADD_TO_CHECKSUM_SQL, SET_STATE_SQL, STATE_CHECKSUM, STATE_FINGERPRINT_VERSION, STATE_LSN } from './schema';

/** One committed event as the log carries it (GET /events, archived log segments). */
export interface LogEvent {
  id: number;
  lsn: number;
  /** Commit time, UTC, ISO 8601 with up to 6 fractional digits and a trailing Z. */
  ts: string;
  kind: string;
  /** The stored JSON text of the payload, as a string. */
  payload: string;
}

export interface ApplyResult {
  /** Rows appended. */
  count: number;
  /** LSN of the first and last row applied; null when events was empty. */
  firstLsn: number | null;
  lastLsn: number | null;
  /** node_state.lsn after the call (unchanged when events was empty). */
  lsn: number;
}

/** How a log row's timestamp is rendered, in SQL: always six fractional digits. */
export const TS_ISO_SQL_FORMAT = '%Y-%m-%dT%H:%M:%S.%fZ';

const ISO_TS = /^([+-]\d{6}|\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?Z$/;

/**
 * "2026-11-26T03:00:00.123456Z" → microseconds since the epoch (UTC). Up to six fractional digits,
 * a trailing Z, and a real calendar date; throws a RangeError otherwise.
 */
export function parseIsoMicros(text: string): bigint {
  const match = ISO_TS.exec(text);
  if (!match) throw new RangeError(`"${text}" is not an ISO timestamp like 2026-11-26T03:00:00.123456Z`);
  const seconds = text.slice(0, text.length - 1 - (match[7] === undefined ? 0 : match[7].length + 1));
  const ms = Date.parse(`${seconds}Z`);
  // Date.parse rolls "02-30" over to March; a round trip catches that.
  if (!Number.isFinite(ms) || new Date(ms).toISOString().replace(/\.\d{3}Z$/, '') !== seconds) {
    throw new RangeError(`"${text}" is not a valid date and time`);
  }
  const fraction = BigInt((match[7] ?? '').padEnd(6, '0'));
  return BigInt(ms) * 1000n + fraction;
}

/** Microseconds since the epoch → "2026-11-26T03:00:00.123456Z" (what GET /events sends). */
export function formatIsoMicros(micros: bigint): string {
  const fraction = ((micros % 1_000_000n) + 1_000_000n) % 1_000_000n;
  const seconds = (micros - fraction) / 1000n;
  const base = new Date(Number(seconds)).toISOString().replace(/\.\d{3}Z$/, '');
  return `${base}.${fraction.toString().padStart(6, '0')}Z`;
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

interface ParsedRow {
  id: bigint;
  lsn: bigint;
  ts: DuckDBTimestampValue;
  kind: string;
  payload: string;
}

/** Checks every event and the (lsn, id) order before anything is written. */
function parseEvents(events: readonly LogEvent[]): ParsedRow[] {
  const rows: ParsedRow[] = [];
  let previous: LogEvent | undefined;
  events.forEach((e, i) => {
    const at = `events[${i}]`;
    if (typeof e !== 'object' || e === null)
      throw new RangeError(`${at}: must be an object { id, lsn, ts, kind, payload }`);
    if (!isCount(e.id)) throw new RangeError(`${at}.id: must be a non-negative safe integer, got ${String(e.id)}`);
    if (!isCount(e.lsn) || e.lsn === 0) {
      throw new RangeError(`${at}.lsn: must be a positive safe integer, got ${String(e.lsn)}`);
    }
    if (typeof e.kind !== 'string') throw new RangeError(`${at}.kind: must be a string`);
    if (typeof e.payload !== 'string') throw new RangeError(`${at}.payload: must be the stored JSON text, a string`);
    if (typeof e.ts !== 'string') throw new RangeError(`${at}.ts: must be an ISO timestamp string`);
    let micros: bigint;
    try {
      micros = parseIsoMicros(e.ts);
    } catch (err) {
      throw new RangeError(`${at}.ts: ${(err as Error).message}`);
    }
    if (previous && (e.lsn < previous.lsn || (e.lsn === previous.lsn && e.id <= previous.id))) {
      throw new RangeError(
        `${at}: (lsn ${e.lsn}, id ${e.id}) does not follow (lsn ${previous.lsn}, id ${previous.id}); ` +
          'events must be in strictly increasing (lsn, id) order',
      );
    }
    previous = e;
    rows.push({
      id: BigInt(e.id),
      lsn: BigInt(e.lsn),
      ts: new DuckDBTimestampValue(micros),
      kind: e.kind,
      payload: e.payload,
    });
  });
  return rows;
}

/** The LSN the database has reached: node_state.lsn, or max(events.lsn) for a bulk-built file. */
async function recordedLsn(connection: DuckDBConnection): Promise<number> {
  const reader = await connection.runAndReadAll(
    `SELECT (SELECT value FROM node_state WHERE key = '${STATE_LSN}'),
            (SELECT coalesce(max(lsn), 0)::VARCHAR FROM events)`,
  );
  const [state, maxLsn] = reader.getRows()[0] ?? [];
  return Math.max(Number(state ?? 0), Number(maxLsn ?? 0));
}

/**
 * Appends add to the recorded checksum in the current fingerprint version only; one recorded in
 * an older version would become a sum of two definitions, so it is refused before anything is
 * written (currentRecordedFingerprint brings a file to the current version first).
 */
async function checkRecordedVersion(connection: DuckDBConnection): Promise<void> {
  const reader = await connection.runAndReadAll(
    `SELECT (SELECT value FROM node_state WHERE key = '${STATE_CHECKSUM}'),
            (SELECT value FROM node_state WHERE key = '${STATE_FINGERPRINT_VERSION}')`,
  );
  const [checksum, version] = reader.getRows()[0] ?? [];
  if (checksum === null || checksum === undefined) return;
  const recorded = parseFingerprintVersion(version === null || version === undefined ? null : String(version));
  if (recorded !== CURRENT_FINGERPRINT_VERSION) {
    throw new RangeError(
      `this database records a fingerprint v${recorded} checksum; events are added to a v${CURRENT_FINGERPRINT_VERSION} ` +
        'one only: record its current fingerprint first',
    );
  }
}

/**
 * Appends events to the `events` table exactly as given (ids, LSNs, timestamps, kind and payload
 * text), in one transaction that also sets node_state.lsn to the last LSN applied and adds the
 * rows to the recorded checksum, as the node does for each batch: the rows and the recorded
 * position commit together or not at all. A recorded checksum must be in the current fingerprint
 * version (RangeError otherwise).
 *
 * The database must have the kimiclaw schema (ensureSchema), and the connection must not be inside
 * a transaction. Events must be in strictly increasing (lsn, id) order and every LSN must be above
 * the one the database has reached (node_state.lsn, or max(events.lsn) when unset): applying a
 * page twice would duplicate rows, so it is refused (RangeError) rather than done. Nothing is
 * written when validation fails; a failed insert is rolled back. An empty list is a no-op.
 */
export async function applyEvents(connection: DuckDBConnection, events: readonly LogEvent[]): Promise<ApplyResult> {
  const rows = parseEvents(events);
  const first = rows[0];
  const last = rows[rows.length - 1];
  if (!first || !last) return { count: 0, firstLsn: null, lastLsn: null, lsn: await recordedLsn(connection) };
  await connection.run('BEGIN TRANSACTION');
  try {
    await checkRecordedVersion(connection);
    const reached = await recordedLsn(connection);
    if (first.lsn <= BigInt(reached)) {
      throw new RangeError(
        `events[0].lsn ${first.lsn} is not above the LSN this database has reached (${reached}); ` +
          'skip the events it already has',
      );
    }
    const appender = await connection.createAppender('events');
    try {
      for (const row of rows) {
        appender.appendBigInt(row.id);
        appender.appendBigInt(row.lsn);
        appender.appendTimestamp(row.ts);
        appender.appendVarchar(row.kind);
        appender.appendVarchar(row.payload);
        appender.endRow();
      }
      appender.flushSync();
    } finally {
      appender.closeSync();
    }
    await connection.run(SET_STATE_SQL, [STATE_LSN, String(last.lsn)]);
    await connection.run(ADD_TO_CHECKSUM_SQL, [String(first.lsn), String(last.lsn)]);
    await connection.run('COMMIT');
  } catch (err) {
    await connection.run('ROLLBACK').catch(() => undefined);
    throw err;
  }
  return { count: rows.length, firstLsn: Number(first.lsn), lastLsn: Number(last.lsn), lsn: Number(last.lsn) };
}
