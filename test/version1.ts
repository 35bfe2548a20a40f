/**
 * Databases and backups as kimiclaw-dr wrote them before fingerprint versions existed: a
 * version-1 checksum (DuckDB's hash()) in node_state with no version beside it, and manifests
 * without fingerprintVersion.
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Meter, compressFile } from '../src/backup/codec';
import { artifactKey, manifestKey } from '../src/backup/ids';
import type { Manifest } from '../src/backup/manifest';
import { openDatabase } from '../src/duckdb/open';
import { checksumSumSql } from '../src/duckdb/row-checksum';
import { SET_STATE_SQL, STATE_CHECKSUM, STATE_LSN, ensureSchema } from '../src/duckdb/schema';
import { recordedFingerprintFile } from '../src/duckdb/verify';
import { type BackupStore, readManifest } from '../src/storage/store';

/** `rows` events, 10 per LSN, ts from 2026-01-01 one per millisecond. */
export async function writeVersion1File(path: string, rows = 1000): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const db = await openDatabase(path);
  try {
    const c = await db.connect();
    try {
      await ensureSchema(c);
      await c.run(
        `INSERT INTO events SELECT i, (i - 1) // 10 + 1, make_timestamp(1767225600000000 + i * 1000), 'k' || (i % 3),
           '{"i":' || i || ',"s":"é€"}' FROM range(1, ${rows + 1}) AS r(i)`,
      );
      await c.run(SET_STATE_SQL, [STATE_LSN, String(Math.ceil(rows / 10))]);
      await c.run(
        `INSERT OR REPLACE INTO node_state SELECT '${STATE_CHECKSUM}', ${checksumSumSql(1, 'e')}::VARCHAR FROM events AS e`,
      );
      await c.run('CHECKPOINT');
    } finally {
      c.closeSync();
    }
  } finally {
    db.close();
  }
}

/**
 * Stores the version-1 file at path as an L2 backup of database kimiclaw in store (artifact, then
 * a manifest without fingerprintVersion) and returns the manifest as read back.
 */
export async function putVersion1Backup(store: BackupStore, backupId: string, path: string): Promise<Manifest> {
  const fp = await recordedFingerprintFile(path);
  if (fp?.fingerprintVersion !== 1) throw new Error(`${path} does not record a version-1 checksum`);
  const key = artifactKey('kimiclaw', 'L2', backupId, 'zstd');
  const compression = compressFile(path, 'zstd', 3);
  const meter = new Meter();
  await Promise.all([store.putArtifact(key, meter), pipeline(compression.stream, meter), compression.done]);
  const { fingerprintVersion: _, ...snapshot } = fp;
  await store.putJson(manifestKey('kimiclaw', 'L2', backupId), {
    format: 1,
    backupId,
    database: 'kimiclaw',
    tier: 'L2',
    node: 'node1',
    createdAt: '2026-01-01T00:00:00.000Z',
    completedAt: '2026-01-01T00:01:00.000Z',
    workflowId: 'backup-kimiclaw-L2-20260101T000000Z',
    runId: 'run',
    snapshot: { ...snapshot, lsn: fp.maxLsn ?? 0, bytes: 1, stallMs: 0 },
    artifact: { key, compression: 'zstd', level: 3, bytes: meter.bytes, sha256: meter.digest() },
    verifiedAt: '2026-01-01T00:00:30.000Z',
  });
  const manifest = await readManifest(store, 'kimiclaw', 'L2', backupId);
  if (!manifest) throw new Error(`the manifest of ${backupId} was not stored`);
  return manifest;
}
