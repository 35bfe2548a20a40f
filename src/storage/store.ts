/**
 * Where backups live. L1 is a directory on the node's own disk; L2 and L3 are an S3-compatible
 * bucket. Both hold the same layout (<database>/<tier>/<backupId>/{artifact,manifest.json}) and
 * answer the same calls, so the backup, catalog and retention code is written once.
 */
import type { Readable } from 'node:stream';
import type { Tier } from '../domain';
import { manifestKey } from '../backup/ids';
import { parseManifest, type Manifest } from '../backup/manifest';

export interface StoredObject {
  /** Key relative to the store's root. */
  key: string;
  bytes: number;
  lastModified: Date;
  /** The store's checksum of the object (S3's ETag), when it gives one. */
  etag?: string;
}

export interface PutArtifactOptions {
  storageClass?: string;
}

export interface BackupStore {
  /** Human-readable location of the store root: s3://bucket/prefix or a directory path. */
  readonly location: string;
  /** Where one key is, for messages and results. */
  locate(key: string): string;
  /** Writes the stream under key; a retry writes the same object again. */
  putArtifact(key: string, body: Readable, options?: PutArtifactOptions): Promise<void>;
  /** Opens a stored artifact for reading. */
  openArtifact(key: string): Promise<{ stream: Readable; bytes: number }>;
  statObject(key: string): Promise<StoredObject | undefined>;
  putJson(key: string, value: unknown): Promise<void>;
  getText(key: string): Promise<string | undefined>;
  /** Every object under a key prefix (e.g. "kimiclaw/L2/"). */
  list(prefix: string): Promise<StoredObject[]>;
  /** Deletes keys; keys already gone are not an error (retried prunes). */
  deleteKeys(keys: string[]): Promise<void>;
  /** Aborts unfinished multipart uploads under a prefix; returns how many. */
  abortIncompleteUploads(prefix: string, startedBefore?: Date): Promise<number>;
}

export interface CatalogListing {
  manifests: Manifest[];
  /** Manifests that could not be read, with the reason: shown, never silently dropped. */
  problems: string[];
}

/** The catalog of one tier: its manifests, newest first. */
export async function listManifests(store: BackupStore, database: string, tier: Tier): Promise<CatalogListing> {
  const objects = await store.list(`${database}/${tier}/`);
  const keys = objects.map((o) => o.key).filter((k) => k.endsWith('/manifest.json'));
  const manifests: Manifest[] = [];
  const problems: string[] = [];
  for (const key of keys) {
    try {
      const text = await store.getText(key);
      if (text !== undefined) manifests.push(parseManifest(text, store.locate(key)));
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  manifests.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  return { manifests, problems };
}

export async function readManifest(
  store: BackupStore,
  database: string,
  tier: Tier,
  backupId: string,
): Promise<Manifest | undefined> {
  const key = manifestKey(database, tier, backupId);
  const text = await store.getText(key);
  return text === undefined ? undefined : parseManifest(text, store.locate(key));
}
