/**
 * Catalog activities. `createCatalogActivities` needs no node's disk (resolving what to back up,
 * Object Lock, leases): the control queue. `createTierCatalogActivities` works on one tier's
 * catalog where it lives (writing and marking manifests, retention, the newest backup, the
 * gauges): for L2 and L3 on the control queue, for L1 on the node's own queue (see
 * backup/tier-policy.ts).
 */
import { log } from '@temporalio/activity';
import { nodeBackupDir, nodeTaskQueue, type Config } from '../config';
import type { Tier } from '../domain';
import { findPrimary } from '../cluster';
import { InputProblem } from '../errors';
import { backupFolder, backupIdOfKey, manifestKey } from '../backup/ids';
import type { Manifest } from '../backup/manifest';
import { planRetention, type KeepReason } from '../backup/retention';
import { DEFAULT_LEVEL } from '../backup/codec';
import { catalogLocations, tierPolicy, type CatalogLocation, type TierPolicy } from '../backup/tier-policy';
import type { DrMetrics } from '../metrics';
import { NodeClient } from '../node-client';
import { listManifests } from '../storage/store';
import type { Stores } from '../storage/stores';

export interface BackupTarget {
  database: string;
  tier: Tier;
  node: { id: string; url: string; dataDir: string; taskQueue: string };
  policy: TierPolicy;
  compression: 'zstd' | 'gzip';
  level: number;
  objectLockMode: 'GOVERNANCE' | 'COMPLIANCE';
  location: string;
}

export interface PruneResult {
  /** The store pruned: the bucket, or a node's L1 directory. */
  location: string;
  dryRun: boolean;
  deleted: Array<{ backupId: string; createdAt: string }>;
  kept: Array<{ backupId: string; reason: KeepReason }>;
  orphansDeleted: string[];
  uploadsAborted: number;
  problems: string[];
}

function leaseKey(database: string, holder: string): string {
  return `${database}/leases/${holder.replace(/[^a-zA-Z0-9._-]/g, '_')}.json`;
}

export function createCatalogActivities(deps: { config: Config; stores: Stores; metrics: DrMetrics }) {
  const { config, stores, metrics } = deps;

  /**
   * Checks the database (and node) exist in config and finds the node to snapshot: the named
   * one, or the one that reports itself primary.
   */
  async function resolveBackupTarget(input: { database: string; tier: Tier; node?: string }): Promise<BackupTarget> {
    const db = stores.database(input.database);
    let node = db.nodes[0]!;
    if (input.node !== undefined) {
      const named = db.nodes.find((n) => n.id === input.node);
      if (!named) {
        const known = db.nodes.map((n) => JSON.stringify(n.id)).join(', ');
        throw new InputProblem('node', `"${input.node}" is not a node of database "${db.name}"; its nodes: ${known}`);
      }
      await new NodeClient(named.id, named.url, undefined, 5_000).health();
      node = named;
    } else {
      node = (await findPrimary(db)).node;
    }
    const compression = config.backup.compression;
    const policy = tierPolicy(config, input.tier, node);
    return {
      database: db.name,
      tier: input.tier,
      node: { id: node.id, url: node.url, dataDir: node.dataDir, taskQueue: nodeTaskQueue(config, node) },
      policy,
      compression,
      level: config.backup.level ?? DEFAULT_LEVEL[compression],
      objectLockMode: config.storage.objectLockMode,
      location: policy.inBucket ? stores.s3().location : nodeBackupDir(node),
    };
  }

  /** The catalogs of a database (of one tier, of one node's L1), each with the queue that reaches it. */
  async function resolveCatalogs(input: { database: string; tier?: Tier; node?: string }): Promise<CatalogLocation[]> {
    const db = stores.database(input.database);
    if (input.node !== undefined && !db.nodes.some((n) => n.id === input.node)) {
      const known = db.nodes.map((n) => JSON.stringify(n.id)).join(', ');
      throw new InputProblem('node', `"${input.node}" is not a node of database "${db.name}"; its nodes: ${known}`);
    }
    return catalogLocations(config, db, input.tier ? [input.tier] : undefined).filter(
      (c) => input.node === undefined || c.node === undefined || c.node === input.node,
    );
  }

  /** Fails fast on a missing bucket or refused credentials; tells whether Object Lock is on. */
  async function checkStorage(): Promise<{ location: string; objectLock: boolean }> {
    const s3 = stores.s3();
    await s3.checkBucket();
    return { location: s3.location, objectLock: await s3.objectLockEnabled() };
  }

  /**
   * Object Lock retention for a verified L3 artifact, applied before its manifest: a backup
   * that failed verification is never locked, so it can still be removed.
   */
  async function lockArtifact(input: {
    key: string;
    mode: 'GOVERNANCE' | 'COMPLIANCE';
    retainUntil: string;
  }): Promise<void> {
    await stores.s3().lockObject(input.key, input.mode, new Date(input.retainUntil));
  }

  /**
   * Leases: a running restore, restore test or drill holds the backups it reads, so retention
   * cannot prune them under it (docs/architecture.md, rule 5). A lease expires on its own if its holder dies.
   */
  async function holdBackups(input: {
    database: string;
    holder: string;
    backupIds: string[];
    ttlMs: number;
  }): Promise<void> {
    await stores.s3().putJson(leaseKey(input.database, input.holder), {
      holder: input.holder,
      backupIds: input.backupIds,
      expiresAt: new Date(Date.now() + input.ttlMs).toISOString(),
    });
  }

  async function releaseBackups(input: { database: string; holder: string }): Promise<void> {
    await stores.s3().deleteKeys([leaseKey(input.database, input.holder)]);
  }

  async function recordBackupFailure(input: { database: string; tier: Tier; step: string }): Promise<void> {
    metrics.backupFailures.inc({ database: input.database, tier: input.tier, step: input.step });
  }

  return {
    resolveBackupTarget,
    resolveCatalogs,
    checkStorage,
    lockArtifact,
    holdBackups,
    releaseBackups,
    recordBackupFailure,
  };
}

/** Backup ids held by unexpired leases. */
async function leasedBackupIds(stores: Stores, database: string): Promise<Set<string>> {
  const held = new Set<string>();
  const s3 = stores.s3();
  for (const object of await s3.list(`${database}/leases/`)) {
    const text = await s3.getText(object.key);
    if (!text) continue;
    const lease = JSON.parse(text) as { backupIds?: unknown; expiresAt?: unknown };
    if (typeof lease.expiresAt !== 'string' || Date.parse(lease.expiresAt) <= Date.now()) continue;
    if (Array.isArray(lease.backupIds)) for (const id of lease.backupIds) if (typeof id === 'string') held.add(id);
  }
  return held;
}

/**
 * One tier's catalog, where it lives: `stores.forTier` reaches the bucket from any worker and an
 * L1 directory only on its node's queue, so these run where backup/tier-policy.ts says.
 */
export function createTierCatalogActivities(deps: { config: Config; stores: Stores; metrics: DrMetrics }) {
  const { config, stores, metrics } = deps;

  /** The commit point of a backup (docs/architecture.md, rule 3): written last, same key on every retry. */
  async function writeManifest(manifest: Manifest): Promise<{ location: string }> {
    const store = stores.forTier(manifest.tier, manifest.database, manifest.node);
    const key = manifestKey(manifest.database, manifest.tier, manifest.backupId);
    const artifact = await store.statObject(manifest.artifact.key);
    if (!artifact || artifact.bytes !== manifest.artifact.bytes) {
      throw new Error(
        `artifact ${store.locate(manifest.artifact.key)} is ${artifact ? `${artifact.bytes} bytes` : 'missing'}, expected ${manifest.artifact.bytes} bytes: refusing to write its manifest`,
      );
    }
    await store.putJson(key, manifest);
    return { location: store.locate(key) };
  }

  /**
   * Applies a tier's retention (docs/architecture.md, rule 5) and sweeps garbage: folders without a manifest
   * and unfinished uploads older than the grace period. `protect` lists backups in use.
   */
  async function pruneTier(input: {
    database: string;
    tier: Tier;
    node?: string;
    protect?: string[];
    dryRun?: boolean;
  }): Promise<PruneResult> {
    const store = stores.forTier(input.tier, input.database, input.node);
    const now = new Date();
    const dryRun = input.dryRun ?? false;
    const protect = new Set([...(input.protect ?? []), ...(await leasedBackupIds(stores, input.database))]);
    const { manifests, problems } = await listManifests(store, input.database, input.tier);
    const plan = planRetention(
      manifests.map((m) => ({ ...m, retainUntil: m.artifact.retainUntil })),
      { now, retentionMs: config.backup.retention[input.tier], inUse: protect },
    );
    const result: PruneResult = {
      location: store.location,
      dryRun,
      deleted: plan.delete.map((m) => ({ backupId: m.backupId, createdAt: m.createdAt })),
      kept: plan.keep.map((k) => ({ backupId: k.backup.backupId, reason: k.reason })),
      orphansDeleted: [],
      uploadsAborted: 0,
      problems,
    };
    for (const m of plan.delete) {
      if (dryRun) continue;
      // Manifest first: once it is gone the artifact is garbage, and a crash here leaves an
      // orphan for the sweep below rather than a manifest pointing at nothing.
      await store.deleteKeys([manifestKey(m.database, m.tier, m.backupId)]);
      await store.deleteKeys([m.artifact.key]);
      log.info('pruned backup', { backupId: m.backupId, createdAt: m.createdAt, tier: m.tier });
    }

    const graceCutoff = new Date(now.getTime() - config.backup.orphanGrace);
    const withManifest = new Set(manifests.map((m) => m.backupId));
    const folders = new Map<string, { keys: string[]; newest: number }>();
    for (const object of await store.list(`${input.database}/${input.tier}/`)) {
      const id = backupIdOfKey(object.key);
      if (!id || withManifest.has(id) || protect.has(id)) continue;
      const folder = folders.get(id) ?? { keys: [], newest: 0 };
      folder.keys.push(object.key);
      folder.newest = Math.max(folder.newest, object.lastModified.getTime());
      folders.set(id, folder);
    }
    for (const [id, folder] of folders) {
      if (folder.newest >= graceCutoff.getTime()) continue;
      result.orphansDeleted.push(id);
      if (!dryRun) await store.deleteKeys(folder.keys);
    }
    if (!dryRun) {
      result.uploadsAborted = await store.abortIncompleteUploads(`${input.database}/${input.tier}/`, graceCutoff);
    }
    return result;
  }

  /**
   * Removes what a backup stored before it failed, unless it was committed (has a manifest):
   * a committed backup is only ever removed by retention.
   */
  async function discardUncommitted(input: {
    database: string;
    tier: Tier;
    node?: string;
    backupId: string;
  }): Promise<number> {
    const store = stores.forTier(input.tier, input.database, input.node);
    const folder = `${backupFolder(input.database, input.tier, input.backupId)}/`;
    const objects = await store.list(folder);
    if (objects.some((o) => o.key.endsWith('/manifest.json'))) return 0;
    await store.deleteKeys(objects.map((o) => o.key));
    await store.abortIncompleteUploads(folder);
    return objects.length;
  }

  /** Records in the catalog that a backup failed verification: no restore picks it again. */
  async function markBackupBad(input: { manifest: Manifest; reason: string }): Promise<void> {
    const m = input.manifest;
    const store = stores.forTier(m.tier, m.database, m.node);
    await store.putJson(manifestKey(m.database, m.tier, m.backupId), {
      ...m,
      bad: { at: new Date().toISOString(), reason: input.reason },
    });
    log.warn('backup marked bad', { backupId: m.backupId, reason: input.reason });
  }

  /**
   * After a restore to an earlier LSN, backups of this catalog taken after that LSN hold the
   * abandoned history: no later restore may use them. Idempotent; returns how many it marked.
   */
  async function markBackupsBadAfter(input: {
    database: string;
    tier: Tier;
    node?: string;
    lsn: number;
    reason: string;
  }): Promise<number> {
    const store = stores.forTier(input.tier, input.database, input.node);
    let marked = 0;
    for (const m of (await listManifests(store, input.database, input.tier)).manifests) {
      if (m.snapshot.lsn <= input.lsn || m.bad) continue;
      await markBackupBad({ manifest: m, reason: input.reason });
      marked++;
    }
    return marked;
  }

  /** The newest verified backup of this catalog, or null when it has none. */
  async function newestBackup(input: { database: string; tier: Tier; node?: string }): Promise<Manifest | null> {
    const store = stores.forTier(input.tier, input.database, input.node);
    return (await listManifests(store, input.database, input.tier)).manifests.find((m) => !m.bad) ?? null;
  }

  /** The backup gauges are reported by the worker that holds the tier's catalog. */
  async function recordBackupMetrics(input: {
    database: string;
    tier: Tier;
    completedAt: string;
    durationSeconds: number;
    storedBytes: number;
    sourceBytes: number;
  }): Promise<void> {
    metrics.recordBackup({ ...input, completedAt: new Date(input.completedAt) });
  }

  return {
    writeManifest,
    pruneTier,
    discardUncommitted,
    markBackupBad,
    markBackupsBadAfter,
    newestBackup,
    recordBackupMetrics,
  };
}
