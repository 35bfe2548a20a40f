/**
 * Builds a realistic events database of about targetBytes, fast, for benchmarks and drills:
 *
 *   npx tsx src/node/generate.ts --path DIR/kimiclaw.duckdb --size 1GiB [--overwrite]
 *
 * Rows are produced by DuckDB itself (INSERT … SELECT FROM range(n)) with JSON-like payloads built
 * from string functions over hashes of the id, so content is varied but reproducible and nothing
 * crosses into JavaScript. One LSN per rowsPerLsn rows mimics batches. Each chunk is one
 * transaction followed by a checkpoint, so the file size can be measured and the loop can stop
 * close to the target. A node started on the result resumes after its highest id and LSN.
 */
import { existsSync } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { openDatabase } from '../duckdb/open';
import { CURRENT_FINGERPRINT_VERSION, checksumSumSql } from '../duckdb/row-checksum';
import {
  SET_STATE_SQL,
  STATE_CHECKSUM,
  STATE_EPOCH,
  STATE_FINGERPRINT_VERSION,
  STATE_LSN,
  ensureSchema,
} from '../duckdb/schema';
import { errorMessage } from './log';

export interface GenerateOptions {
  targetBytes: number;
  /** Rows per LSN (per simulated batch). */
  rowsPerLsn?: number;
  /** Upper bound of rows per transaction. */
  chunkRows?: number;
  /** Replace an existing file (and its WAL); otherwise an existing file is an error. */
  overwrite?: boolean;
  /** Timestamp of the first row; one row per millisecond after it. */
  startTime?: Date;
  onProgress?: (progress: { rows: number; bytes: number; elapsedMs: number }) => void;
}

export interface GenerateResult {
  path: string;
  rows: number;
  lastId: number;
  lsn: number;
  bytes: number;
  durationMs: number;
}

/** A first guess of file bytes per row (measured: ~123); corrected after every chunk. */
const INITIAL_BYTES_PER_ROW = 123;

/** One of items, chosen by bits of the row's hash h (one hash per row is cheaper than many). */
const pickSql = (items: string[], shift: number): string =>
  `([${items.map((i) => `'${i}'`).join(', ')}])[1 + ((h >> ${shift}) % ${items.length})::INTEGER]`;
const bitsSql = (shift: number, below: number): string => `((h >> ${shift}) % ${below})`;

function insertSql(fromRow: number, toRow: number, rowsPerLsn: number, startMicros: number): string {
  const kind = pickSql(['page_view', 'click', 'add_to_cart', 'checkout', 'login', 'logout', 'search', 'purchase'], 52);
  const page = pickSql(['home', 'products', 'cart', 'checkout', 'search', 'account', 'help'], 18);
  const referrer = pickSql(['google', 'direct', 'newsletter', 'twitter', 'partner'], 34);
  const os = pickSql(['ios', 'android', 'windows', 'macos', 'linux'], 37);
  // Sessions span 20 consecutive events; the trace id is unique per event.
  return `
INSERT INTO events
SELECT id, lsn, ts, kind,
  '{"user_id":"u_' || ${bitsSql(0, 200000)} || '","session_id":"' || printf('%016x', hash(id // 20)) ||
  '","action":"' || kind || '","at":"' || strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ') ||
  '","attributes":{"page":"/' || ${page} || '/' || ${bitsSql(21, 5000)} ||
  '","referrer":"' || ${referrer} ||
  '","device":{"os":"' || ${os} || '","version":"' || ${bitsSql(40, 20)} || '.' || ${bitsSql(45, 10)} ||
  '"},"cart":{"items":' || ${bitsSql(49, 12)} || ',"total_cents":' || ${bitsSql(20, 250000)} ||
  '}},"ip":"10.' || ${bitsSql(8, 256)} || '.' || ${bitsSql(16, 256)} || '.' || ${bitsSql(24, 256)} ||
  '","trace_id":"' || md5(id::VARCHAR) || '"}'
FROM (
  SELECT id, lsn, ts, h, ${kind} AS kind
  FROM (
    SELECT i + 1 AS id, i // ${rowsPerLsn} + 1 AS lsn, make_timestamp(${startMicros}::BIGINT + i * 1000) AS ts, hash(i) AS h
    FROM range(${fromRow}, ${toRow}) AS r(i)
  )
)`;
}

export async function generateDatabase(path: string, options: GenerateOptions): Promise<GenerateResult> {
  const target = resolve(path);
  const rowsPerLsn = options.rowsPerLsn ?? 1000;
  const chunkRows = options.chunkRows ?? 1_000_000;
  if (!(options.targetBytes > 0)) throw new RangeError('targetBytes must be > 0');
  if (!Number.isInteger(rowsPerLsn) || rowsPerLsn < 1) throw new RangeError('rowsPerLsn must be an integer >= 1');
  if (existsSync(target)) {
    if (!options.overwrite) throw new Error(`${target} already exists; pass overwrite to replace it`);
    await rm(target);
  }
  // A stale WAL would be replayed onto the new file and mix in foreign rows.
  await rm(`${target}.wal`, { force: true });
  await mkdir(dirname(target), { recursive: true });

  const started = performance.now();
  const startMicros = (options.startTime ?? new Date('2025-01-01T00:00:00Z')).getTime() * 1000;
  const db = await openDatabase(target);
  try {
    const connection = await db.connect();
    try {
      await ensureSchema(connection);
      let rows = 0;
      let bytes = (await stat(target)).size;
      let bytesPerRow = INITIAL_BYTES_PER_ROW;
      while (bytes < options.targetBytes) {
        const wanted = Math.ceil((options.targetBytes - bytes) / bytesPerRow);
        // Whole LSNs per chunk, so no LSN is split across two transactions.
        const lsns = Math.max(1, Math.ceil(Math.min(wanted, chunkRows) / rowsPerLsn));
        const next = rows + lsns * rowsPerLsn;
        await connection.run(insertSql(rows, next, rowsPerLsn, startMicros));
        await connection.run('CHECKPOINT');
        rows = next;
        bytes = (await stat(target)).size;
        bytesPerRow = Math.max(1, bytes / rows);
        options.onProgress?.({ rows, bytes, elapsedMs: Math.round(performance.now() - started) });
      }
      const lsn = Math.ceil(rows / rowsPerLsn);
      await connection.run('BEGIN TRANSACTION');
      await connection.run(SET_STATE_SQL, [STATE_LSN, String(lsn)]);
      await connection.run(SET_STATE_SQL, [STATE_EPOCH, '1']);
      // Recorded as a node records it, so the node opens the file without hashing every row.
      await connection.run(
        `INSERT OR REPLACE INTO node_state SELECT '${STATE_CHECKSUM}', ${checksumSumSql(CURRENT_FINGERPRINT_VERSION, 'e')}::VARCHAR FROM events AS e`,
      );
      await connection.run(SET_STATE_SQL, [STATE_FINGERPRINT_VERSION, String(CURRENT_FINGERPRINT_VERSION)]);
      await connection.run('COMMIT');
      await connection.run('CHECKPOINT');
      bytes = (await stat(target)).size;
      return { path: target, rows, lastId: rows, lsn, bytes, durationMs: Math.round(performance.now() - started) };
    } finally {
      connection.closeSync();
    }
  } finally {
    db.close();
  }
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

/** "1GiB", "500MB", "1048576" → bytes. */
export function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const unit = SIZE_UNITS[(match?.[2] ?? '').toLowerCase()];
  if (!match || unit === undefined) throw new Error(`"${text}" is not a size; write e.g. 1GiB, 500MiB, 200MB or bytes`);
  return Math.round(Number(match[1]) * unit);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      path: { type: 'string' },
      size: { type: 'string', default: '1GiB' },
      'rows-per-lsn': { type: 'string', default: '1000' },
      overwrite: { type: 'boolean', default: false },
    },
  });
  if (!values.path)
    throw new Error('usage: generate.ts --path FILE.duckdb [--size 1GiB] [--rows-per-lsn 1000] [--overwrite]');
  const result = await generateDatabase(values.path, {
    targetBytes: parseSize(values.size),
    rowsPerLsn: Number(values['rows-per-lsn']),
    overwrite: values.overwrite,
    onProgress: (p) => process.stderr.write(`${JSON.stringify({ event: 'generate_progress', ...p })}\n`),
  });
  process.stdout.write(`${JSON.stringify({ event: 'generated', ...result })}\n`);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`generate: ${errorMessage(err)}\n`);
    process.exit(1);
  });
}
