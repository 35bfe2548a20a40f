/**
 * Fingerprints a DuckDB file that nobody else has open (a snapshot, a downloaded artifact, a
 * restored file) so it can be compared with the fingerprint recorded at the source.
 *
 * The file is opened READ-ONLY in a child process: a corrupt file can crash the DuckDB reader,
 * and a crash must become a rejected promise here, not the end of the worker. Read-only opening
 * leaves the file byte-identical and creates no .wal.
 */
import { spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  type Fingerprint,
  type FingerprintShape,
  RECORDED_FINGERPRINT_SQL,
  SHAPE_SQL,
  fingerprintQuery,
  parseFingerprintRow,
  parseShapeRow,
} from './fingerprint';
import type { FingerprintVersion } from './row-checksum';

const CHILD_SCRIPT = join(__dirname, 'fingerprint-child.cjs');
/** Generous: a GiB takes a few seconds; a stuck reader on a broken file should still end. */
const DEFAULT_TIMEOUT_MS = 10 * 60_000;
const STDERR_TAIL = 2_000;

export interface FingerprintFileOptions {
  timeoutMs?: number;
  /** Fingerprint only rows with lsn <= upToLsn. */
  upToLsn?: number;
  /** The fingerprint version to compute (default: the current one). */
  version?: FingerprintVersion;
}

interface ChildReply {
  ok: boolean;
  row?: Record<string, unknown> | null;
  stage?: 'open' | 'schema' | 'query';
  message?: string;
}

function parseReply(stdout: string): ChildReply | undefined {
  const line = stdout.trim().split('\n').pop();
  if (!line) return undefined;
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === 'object' && value !== null && 'ok' in value ? (value as ChildReply) : undefined;
  } catch {
    return undefined;
  }
}

function explain(path: string, reply: ChildReply): Error {
  const message = reply.message ?? 'no details';
  switch (reply.stage) {
    case 'schema':
      return new Error(`${path} is a DuckDB database without an events table (${message})`);
    case 'query':
      return new Error(`reading the events table of ${path} failed: ${message}`);
    default:
      return new Error(`${path} is not a readable DuckDB database: ${message}`);
  }
}

/** Opens path read-only in a child process and returns the fingerprint of its events table. */
export async function fingerprintFile(path: string, opts: FingerprintFileOptions = {}): Promise<Fingerprint> {
  const { absolute, row } = await queryFile(
    path,
    fingerprintQuery(opts.upToLsn, undefined, opts.version),
    opts.timeoutMs,
  );
  return parse(absolute, row);
}

/** Rows, ids and LSNs of the file's events, without hashing anything. */
export async function shapeFile(path: string, opts: { timeoutMs?: number } = {}): Promise<FingerprintShape> {
  const { absolute, row } = await queryFile(path, SHAPE_SQL, opts.timeoutMs);
  try {
    return parseShapeRow(row);
  } catch (err) {
    throw new Error(`the rows, ids and LSNs of ${absolute} are malformed: ${(err as Error).message}`);
  }
}

/**
 * The file's fingerprint with the checksum it recorded for itself and its version (see
 * RECORDED_FINGERPRINT_SQL): proves DuckDB opens it and that its rows, ids and LSNs are what they
 * should be, without hashing every row. Undefined when the file recorded no checksum.
 */
export async function recordedFingerprintFile(
  path: string,
  opts: { timeoutMs?: number } = {},
): Promise<Fingerprint | undefined> {
  const { absolute, row } = await queryFile(path, RECORDED_FINGERPRINT_SQL, opts.timeoutMs);
  return row.checksum === null || row.checksum === undefined ? undefined : parse(absolute, row);
}

function parse(absolute: string, row: Record<string, unknown>): Fingerprint {
  try {
    return parseFingerprintRow(row);
  } catch (err) {
    throw new Error(`the fingerprint of ${absolute} is malformed: ${(err as Error).message}`);
  }
}

async function queryFile(
  path: string,
  sql: string,
  timeoutMs = DEFAULT_TIMEOUT_MS,
): Promise<{ absolute: string; row: Record<string, unknown> }> {
  const absolute = resolve(path);
  const info = await stat(absolute).catch((err: NodeJS.ErrnoException) => {
    throw new Error(`${absolute} cannot be read: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
  });
  if (!info.isFile()) throw new Error(`${absolute} is not a regular file`);

  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CHILD_SCRIPT, absolute, sql], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-STDERR_TAIL);
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start the reader for ${absolute}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const tail = stderr.trim() ? `; stderr: ${stderr.trim()}` : '';
      if (timedOut) return reject(new Error(`reading ${absolute} timed out after ${timeoutMs} ms`));
      const reply = parseReply(stdout);
      if (signal) return reject(new Error(`the reader of ${absolute} crashed (signal ${signal})${tail}`));
      if (!reply) return reject(new Error(`the reader of ${absolute} exited with code ${code} and no answer${tail}`));
      if (!reply.ok || code !== 0) return reject(explain(absolute, reply));
      if (!reply.row) return reject(new Error(`the reader of ${absolute} returned no fingerprint`));
      resolvePromise({ absolute, row: reply.row });
    });
  });
}
