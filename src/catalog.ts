/**
 * The catalog as operators see it: every backup of every tier, and a full check of one stored
 * backup (download, SHA-256 against the manifest, open in DuckDB, compare with the source
 * fingerprint recorded at snapshot time).
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Config } from './config';
import { TIERS, type Tier } from './domain';
import { InputProblem } from './errors';
import { Meter, codecStream } from './backup/codec';
import { parseBackupId } from './backup/ids';
import { fingerprintDifferences, type Manifest } from './backup/manifest';
import { fingerprintFile } from './duckdb/verify';
import { listManifests, readManifest, type BackupStore } from './storage/store';
import type { Stores } from './storage/stores';

export interface CatalogEntry {
  backupId: string;
  database: string;
  tier: Tier;
  node: string;
  createdAt: string;
  rows: number;
  lsn: number;
  sourceBytes: number;
  storedBytes: number;
  compression: string;
  sha256: string;
  location: string;
  storageClass?: string;
  retainUntil?: string;
  bad?: { at: string; reason: string };
}

export interface Catalog {
  backups: CatalogEntry[];
  problems: string[];
}

function entryOf(manifest: Manifest, store: BackupStore): CatalogEntry {
  return {
    backupId: manifest.backupId,
    database: manifest.database,
    tier: manifest.tier,
    node: manifest.node,
    createdAt: manifest.createdAt,
    rows: manifest.snapshot.rows,
    lsn: manifest.snapshot.lsn,
    sourceBytes: manifest.snapshot.bytes,
    storedBytes: manifest.artifact.bytes,
    compression: manifest.artifact.compression,
    sha256: manifest.artifact.sha256,
    location: store.locate(manifest.artifact.key),
    ...(manifest.artifact.storageClass ? { storageClass: manifest.artifact.storageClass } : {}),
    ...(manifest.artifact.retainUntil ? { retainUntil: manifest.artifact.retainUntil } : {}),
    ...(manifest.bad ? { bad: manifest.bad } : {}),
  };
}

export async function listCatalog(
  config: Config,
  stores: Stores,
  filter: { database?: string; tier?: Tier } = {},
): Promise<Catalog> {
  const catalog: Catalog = { backups: [], problems: [] };
  for (const db of config.databases) {
    if (filter.database && db.name !== filter.database) continue;
    for (const tier of TIERS) {
      if (filter.tier && tier !== filter.tier) continue;
      for (const store of stores.ofTier(db.name, tier)) {
        const listing = await listManifests(store, db.name, tier);
        catalog.backups.push(...listing.manifests.map((m) => entryOf(m, store)));
        catalog.problems.push(...listing.problems);
      }
    }
  }
  catalog.backups.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  return catalog;
}

/** Finds a backup's manifest by id; the id itself says which database and tier. */
export async function findBackup(
  config: Config,
  stores: Stores,
  backupId: string,
): Promise<{ manifest: Manifest; store: BackupStore }> {
  const parsed = parseBackupId(backupId);
  if (!parsed) {
    throw new InputProblem('backupId', `"${backupId}" is not a backup id (like kimiclaw-L2-20261126T030000Z-3f9a)`);
  }
  if (!config.databases.some((d) => d.name === parsed.database)) {
    throw new InputProblem(
      'backupId',
      `backup ${backupId} belongs to database "${parsed.database}", which is not configured`,
    );
  }
  for (const store of stores.ofTier(parsed.database, parsed.tier)) {
    const manifest = await readManifest(store, parsed.database, parsed.tier, backupId);
    if (manifest) return { manifest, store };
  }
  throw new InputProblem('backupId', `no backup ${backupId} in the catalog (no manifest found)`);
}

export interface VerifyReport {
  backupId: string;
  ok: boolean;
  location: string;
  problems: string[];
  sha256: string;
  rows?: number;
  downloadedBytes: number;
  seconds: number;
}

/**
 * Downloads the artifact, checks its SHA-256 against the manifest, decompresses it to a scratch
 * file, opens it with DuckDB (in a child process) and compares the fingerprint with the one
 * recorded at snapshot time. Never throws for a bad backup: the report says what is wrong.
 */
export async function verifyStoredBackup(
  manifest: Manifest,
  store: BackupStore,
  options: { scratchDir?: string } = {},
): Promise<VerifyReport> {
  const started = Date.now();
  const location = store.locate(manifest.artifact.key);
  const scratch = await mkdtemp(join(options.scratchDir ?? tmpdir(), `verify-${manifest.backupId}-`));
  const problems: string[] = [];
  const meter = new Meter();
  let rows: number | undefined;
  try {
    const { stream } = await store.openArtifact(manifest.artifact.key);
    const codec = codecStream(manifest.artifact.compression, 'decompress');
    const file = join(scratch, `${manifest.database}.duckdb`);
    try {
      await Promise.all([pipeline(stream, meter, codec.stream, createWriteStream(file)), codec.done]);
    } catch (err) {
      problems.push(`cannot decompress: ${(err as Error).message}`);
    }
    const sha256 = meter.digest();
    if (sha256 !== manifest.artifact.sha256) {
      problems.push(`SHA-256 mismatch: manifest says ${manifest.artifact.sha256}, stored artifact is ${sha256}`);
    }
    if (meter.bytes !== manifest.artifact.bytes) {
      problems.push(`size mismatch: manifest says ${manifest.artifact.bytes} bytes, stored artifact is ${meter.bytes}`);
    }
    if (problems.length === 0) {
      try {
        const actual = await fingerprintFile(file);
        rows = actual.rows;
        problems.push(...fingerprintDifferences(manifest.snapshot, actual));
      } catch (err) {
        problems.push(`DuckDB cannot open the restored file: ${(err as Error).message}`);
      }
    }
    return {
      backupId: manifest.backupId,
      ok: problems.length === 0,
      location,
      problems,
      sha256,
      rows,
      downloadedBytes: meter.bytes,
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
