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
import { checkBackupContent, type ContentVerification } from './backup/content-check';
import { v1KnownAnswerOf } from './backup/fingerprint-sidecar';
import type { Manifest } from './backup/manifest';
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

/**
 * The stores of a tier this host can read: the bucket, or the L1 directories of its own nodes.
 * `elsewhere` names the nodes whose L1 is only readable on their hosts.
 */
function readableStores(stores: Stores, database: string, tier: Tier): { found: BackupStore[]; elsewhere: string[] } {
  if (tier !== 'L1') return { found: [stores.s3()], elsewhere: [] };
  const nodes = stores.database(database).nodes;
  return {
    found: nodes.filter((n) => stores.isLocal(n.id)).map((n) => stores.local(database, n.id)),
    elsewhere: nodes.filter((n) => !stores.isLocal(n.id)).map((n) => n.id),
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
      const { found, elsewhere } = readableStores(stores, db.name, tier);
      for (const node of elsewhere) {
        catalog.problems.push(`L1 backups of ${db.name} on node ${node} are not listed: they are on that node's host`);
      }
      for (const store of found) {
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
  const { found, elsewhere } = readableStores(stores, parsed.database, parsed.tier);
  for (const store of found) {
    const manifest = await readManifest(store, parsed.database, parsed.tier, backupId);
    if (manifest) return { manifest, store };
  }
  const unread = elsewhere.length
    ? ` (not searched: the L1 directories of ${elsewhere.join(', ')}, on their hosts)`
    : '';
  throw new InputProblem('backupId', `no backup ${backupId} in the catalog (no manifest found)${unread}`);
}

export interface VerifyReport {
  backupId: string;
  ok: boolean;
  location: string;
  problems: string[];
  sha256: string;
  rows?: number;
  /** Which fingerprint version was compared and how; absent when the artifact failed before. */
  verification?: ContentVerification;
  downloadedBytes: number;
  seconds: number;
}

/**
 * Downloads the artifact, checks its SHA-256 against the manifest, decompresses it to a scratch
 * file, opens it with DuckDB (in a child process) and compares the fingerprint with the one
 * recorded at snapshot time, every row hashed in the manifest's fingerprint version (or, for a
 * version-1 manifest when this DuckDB's hash() changed, rows, ids and LSNs alone: see
 * content-check.ts). Never throws for a bad backup: the report says what is wrong.
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
  let verification: ContentVerification | undefined;
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
        const check = await checkBackupContent(file, manifest.snapshot, {
          fullScan: true,
          v1KnownAnswer: () => v1KnownAnswerOf(store, manifest),
        });
        rows = check.found.rows;
        verification = check.verification;
        problems.push(...check.differences);
      } catch (err) {
        problems.push(`cannot check the restored file's content: ${(err as Error).message}`);
      }
    }
    return {
      backupId: manifest.backupId,
      ok: problems.length === 0,
      location,
      problems,
      sha256,
      rows,
      ...(verification ? { verification } : {}),
      downloadedBytes: meter.bytes,
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
