/**
 * Opening and closing the node's DuckDB file: the instance, the writer connection with its prepared
 * statements, and what the file says about itself (position, running fingerprint, role, epoch,
 * history, acknowledged LSN) in node_state. The store (store.ts) decides when.
 */
import { type Stats } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { DuckDBConnection, DuckDBPreparedStatement } from '@duckdb/node-api';
import { checkpointFully } from '../duckdb/checkpoint';
import { type CurrentFingerprint, currentRecordedFingerprint } from '../duckdb/fingerprint';
import { type OpenDatabase, openDatabase } from '../duckdb/open';
import { CURRENT_FINGERPRINT_VERSION, checksumSumSql } from '../duckdb/row-checksum';
import {
  SET_STATE_SQL,
  STATE_ACKED_LSN,
  STATE_EPOCH,
  STATE_HISTORY,
  STATE_LSN,
  STATE_ROLE,
  type StoredPosition,
  UPDATE_CHECKSUM_SQL,
  UPDATE_LSN_SQL,
  ensureSchema,
  readPosition,
} from '../duckdb/schema';
import { type Logger, errorMessage } from './log';

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

/** The same epochs, begun at the same LSNs. */
export function sameHistory(a: readonly EpochStart[], b: readonly EpochStart[]): boolean {
  return a.length === b.length && a.every((h, i) => h.epoch === b[i]!.epoch && h.startLsn === b[i]!.startLsn);
}

/**
 * Role, fencing epoch and epoch history, kept in node_state so a restart resumes them. 'none': the
 * node has no database (empty) or cannot read the one it has, and knows nothing of its own.
 */
export interface ReplicationState {
  role: NodeRole | 'none';
  epoch: number;
  history: EpochStart[];
}

/** The checksum of one batch, inside its own transaction (the same rows fingerprintQuery hashes). */
const BATCH_CHECKSUM_SQL = `SELECT ${checksumSumSql(CURRENT_FINGERPRINT_VERSION, 'e')}::VARCHAR FROM events AS e WHERE e.lsn = $1`;

/** The open file: the instance, the writer connection and its prepared statements. */
export interface Session {
  db: OpenDatabase;
  writer: DuckDBConnection;
  updateLsn: DuckDBPreparedStatement;
  updateChecksum: DuckDBPreparedStatement;
  batchChecksum: DuckDBPreparedStatement;
}

export interface Opened {
  session: Session;
  position: StoredPosition;
  /** The file's fingerprint, and whether opening had to compute it (CurrentFingerprint). */
  initial: CurrentFingerprint;
  /** Role and history as stored; undefined for a file no node has run on. */
  role: NodeRole | undefined;
  history: EpochStart[];
  /** The acknowledged LSN recorded at the last role change; 0 when none was. */
  ackedLsn: number;
}

async function readRoleState(
  c: DuckDBConnection,
): Promise<{ role: NodeRole | undefined; history: EpochStart[]; ackedLsn: number }> {
  const rows = (
    await c.runAndReadAll(
      `SELECT key, value FROM node_state WHERE key IN ('${STATE_ROLE}', '${STATE_HISTORY}', '${STATE_ACKED_LSN}')`,
    )
  ).getRows();
  const values = new Map(rows.map(([k, v]) => [String(k), String(v)]));
  const role = values.get(STATE_ROLE);
  const history = values.has(STATE_HISTORY) ? (JSON.parse(values.get(STATE_HISTORY)!) as EpochStart[]) : [];
  return {
    role: NODE_ROLES.includes(role as NodeRole) ? (role as NodeRole) : undefined,
    history,
    ackedLsn: Number(values.get(STATE_ACKED_LSN) ?? 0),
  };
}

/** dev:ino:size:mtime of a file, null when there is none: tells one file (or WAL) from another. */
export async function fileState(path: string): Promise<string | null> {
  const info: Stats | undefined = await stat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  return info ? `${info.dev}:${info.ino}:${info.size}:${info.mtimeMs}` : null;
}

/** Opens (or creates) the file, checks the schema, and reads where it stands. */
export async function openSession(path: string): Promise<Opened> {
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
    const stored = await readRoleState(writer);
    return { session: { db, writer, updateLsn, updateChecksum, batchChecksum }, position, initial, ...stored };
  } catch (err) {
    try {
      db.close();
    } catch {
      // The open failure is the news; a close failure keeps the path registered (never reopened).
    }
    throw err;
  }
}

/**
 * Closes the session; the caller holds the write lock and no read is running. `checkpoint: false`
 * for an instance DuckDB has invalidated, which refuses every statement.
 */
export async function closeSession(session: Session, path: string, log: Logger, checkpoint = true): Promise<void> {
  if (checkpoint) {
    try {
      const result = await checkpointFully(session.writer, path);
      if (result.attempts > 1) log('checkpoint_retried', { ...result });
    } catch (err) {
      // The WAL still holds the data and is replayed at the next open; closing must go on.
      log('checkpoint_on_close_failed', { error: errorMessage(err) });
    }
  }
  session.writer.closeSync();
  session.db.close();
}
