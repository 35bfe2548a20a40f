/**
 * Every name the system derives: backup ids, object keys, workflow and schedule ids. Built here
 * and nowhere else, so a key is never assembled by string concatenation in three places.
 *
 * Pure and free of Node built-ins: workflow code imports it.
 */
import type { Tier } from '../domain';

/** 2026-11-26T03:00:00.000Z → 20261126T030000Z: sorts chronologically and is safe in keys. */
export function compactTimestamp(at: Date): string {
  return at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}Z$/, 'Z');
}

/**
 * A backup id names the database, the tier and the instant; the suffix (from the workflow run)
 * keeps two backups started in the same second apart. Example: kimiclaw-L2-20261126T030000Z-3f9a.
 */
export function backupId(database: string, tier: Tier, at: Date, runId: string): string {
  // Run ids may be time-ordered UUIDs (v7) whose leading digits barely change: take the end.
  const suffix = runId
    .replace(/[^a-f0-9]/gi, '')
    .slice(-4)
    .toLowerCase()
    .padStart(4, '0');
  return `${database}-${tier}-${compactTimestamp(at)}-${suffix}`;
}

export const BACKUP_ID_RE = /^([a-z0-9][a-z0-9_-]{0,62})-(L[123])-(\d{8}T\d{6}Z)-([a-f0-9]{4})$/;

export interface ParsedBackupId {
  database: string;
  tier: Tier;
  createdAt: Date;
}

/** Splits a backup id; undefined when the text is not one (e.g. "../x", an absolute path). */
export function parseBackupId(id: string): ParsedBackupId | undefined {
  const m = BACKUP_ID_RE.exec(id);
  if (!m) return undefined;
  const [, database, tier, ts] = m as unknown as [string, string, Tier, string];
  const iso = `${ts.slice(0, 4)}-${ts.slice(4, 6)}-${ts.slice(6, 8)}T${ts.slice(9, 11)}:${ts.slice(11, 13)}:${ts.slice(13, 15)}Z`;
  const createdAt = new Date(iso);
  // Date rolls impossible dates over (Feb 31 → Mar 3); only a round trip proves the date real.
  if (Number.isNaN(createdAt.getTime()) || compactTimestamp(createdAt) !== ts) return undefined;
  return { database, tier, createdAt };
}

export type Compression = 'zstd' | 'gzip';

export const COMPRESSION_EXTENSION: Record<Compression, string> = { zstd: 'zst', gzip: 'gz' };

/** Everything of one backup lives under one folder: <database>/<tier>/<backupId>/. */
export function backupFolder(database: string, tier: Tier, id: string): string {
  return `${database}/${tier}/${id}`;
}

export function artifactKey(database: string, tier: Tier, id: string, compression: Compression): string {
  return `${backupFolder(database, tier, id)}/${database}.duckdb.${COMPRESSION_EXTENSION[compression]}`;
}

export function manifestKey(database: string, tier: Tier, id: string): string {
  return `${backupFolder(database, tier, id)}/manifest.json`;
}

/** The backup id a key under <database>/<tier>/ belongs to, if any. */
export function backupIdOfKey(relativeKey: string): string | undefined {
  const parts = relativeKey.split('/');
  return parts.length >= 3 ? parts[2] : undefined;
}

export function backupWorkflowId(database: string, tier: Tier, at: Date): string {
  return `backup-${database}-${tier}-${compactTimestamp(at)}`;
}

export function restoreWorkflowId(database: string, at: Date): string {
  return `restore-${database}-${compactTimestamp(at)}`;
}

export function restoreTestWorkflowId(database: string, tier: Tier, at: Date): string {
  return `restore-test-${database}-${tier}-${compactTimestamp(at)}`;
}

/** `unique` tells apart two started in the same second (a retention run, a restore preview). */
export function pruneWorkflowId(database: string, tier: Tier, at: Date, unique: string): string {
  return `prune-${database}-${tier}-${compactTimestamp(at)}-${unique}`;
}

export function restorePlanWorkflowId(database: string, at: Date, unique: string): string {
  return `restore-plan-${database}-${compactTimestamp(at)}-${unique}`;
}

/** One log archiver per database: the id makes a second one impossible. */
export function archiveWorkflowId(database: string): string {
  return `archive-log-${database}`;
}

export function backupScheduleId(database: string, tier: Tier): string {
  return `${SCHEDULE_ID_PREFIX}backup-${database}-${tier}`;
}

export function restoreTestScheduleId(database: string, tier: Tier): string {
  return `${SCHEDULE_ID_PREFIX}restore-test-${database}-${tier}`;
}

export function drillScheduleId(cluster: string): string {
  return `${SCHEDULE_ID_PREFIX}drill-${cluster}`;
}

/** Every schedule this system owns starts with this; `schedules apply` deletes only those. */
export const SCHEDULE_ID_PREFIX = 'kimiclaw-dr-';

/** Snapshots are written inside the node's data directory, one file per backup. */
export function snapshotRelativePath(id: string): string {
  return `snapshots/${id}.duckdb`;
}
