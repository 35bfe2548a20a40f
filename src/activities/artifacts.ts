/**
 * Activities that work on the node's own disk: ask the node for a snapshot, verify it, compress
 * and store it, remove it. They run on the node's task queue, on the host that owns the file, and
 * pass paths, keys and checksums, never file bytes.
 */
import { Context, log } from '@temporalio/activity';
import { rm, stat } from 'node:fs/promises';
import { isAbsolute, join, relative } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Config } from '../config';
import type { Tier } from '../domain';
import { ConfigProblem, InputProblem, VerificationFailed } from '../errors';
import { Meter, compressFile } from '../backup/codec';
import { Throttle } from '../backup/throttle';
import { artifactKey, backupFolder, snapshotRelativePath, type Compression } from '../backup/ids';
import type { Fingerprint } from '../backup/manifest';
import { fingerprintDifferences } from '../duckdb/fingerprint';
import { fingerprintFile } from '../duckdb/verify';
import { NodeClient, type NodeSnapshot } from '../node-client';
import type { Stores } from '../storage/stores';

export interface StoreArtifactInput {
  database: string;
  tier: Tier;
  node: string;
  backupId: string;
  snapshotPath: string;
  compression: Compression;
  level: number;
  storageClass?: string;
  /** MiB/s cap on the upload (the tier's policy). */
  limitMiBps?: number;
}

export interface StoredArtifact {
  key: string;
  location: string;
  bytes: number;
  sourceBytes: number;
  sha256: string;
}

/** Heartbeat details of long activities, read by the CLI's progress bar. */
export interface TransferProgress {
  phase: string;
  bytesDone: number;
  bytesTotal: number;
  bytesOut?: number;
}

export function createArtifactActivities(deps: { config: Config; stores: Stores }) {
  const { stores } = deps;

  /** Keeps a long call alive for Temporal while we wait on something that cannot heartbeat. */
  async function withHeartbeat<T>(work: Promise<T>, details: () => TransferProgress): Promise<T> {
    const timer = setInterval(() => Context.current().heartbeat(details()), 2_000);
    try {
      return await work;
    } finally {
      clearInterval(timer);
    }
  }

  function snapshotPathFor(database: string, nodeId: string, backupId: string): string {
    return join(stores.localNode(database, nodeId).dataDir, snapshotRelativePath(backupId));
  }

  /** Asks the node for a consistent snapshot (docs/architecture.md, rule 1) on its own disk. */
  async function snapshotDatabase(input: {
    database: string;
    node: string;
    backupId: string;
  }): Promise<NodeSnapshot & { path: string }> {
    const node = stores.node(input.database, input.node);
    const path = snapshotPathFor(input.database, input.node, input.backupId);
    const client = new NodeClient(node.id, node.url, deps.config.nodeAuth.token);
    try {
      const snapshot = await withHeartbeat(client.snapshot(path), () => ({
        phase: 'snapshot',
        bytesDone: 0,
        bytesTotal: 0,
      }));
      log.info('snapshot taken', { path, lsn: snapshot.lsn, rows: snapshot.rows, stallMs: snapshot.stallMs });
      return { ...snapshot, path };
    } catch (err) {
      if (err instanceof InputProblem && err.field === 'path') {
        // The node says the path is not inside its data directory: config and node disagree.
        throw new ConfigProblem(
          `databases.${input.database}.nodes.${input.node}.dataDir`,
          `node ${node.id} refused snapshot path ${path}: ${err.message}. Set dataDir to the node's data directory.`,
        );
      }
      throw err;
    }
  }

  /**
   * Opens the snapshot with DuckDB in a child process and compares its fingerprint, computed in
   * the version the node reported, with the one the node recorded at snapshot time: a torn copy
   * cannot pass.
   */
  async function verifySnapshot(input: {
    path: string;
    expected: Fingerprint;
    backupId: string;
  }): Promise<Fingerprint> {
    const version = input.expected.fingerprintVersion;
    const actual = await withHeartbeat(fingerprintFile(input.path, { version }), () => ({
      phase: 'verify',
      bytesDone: 0,
      bytesTotal: 0,
    })).catch((err: unknown) => {
      // DuckDB refusing the copy (a checksum, a crash on it) is a fact about the file: the same
      // copy fails the same way again, so it is final, not retried for hours.
      const message = (err as Error).message;
      if (
        /is not a readable DuckDB database|reading the events table of|without an events table|crashed/.test(message)
      ) {
        throw new VerificationFailed(
          `snapshot of backup ${input.backupId} (${input.path}) failed verification: ${message}`,
        );
      }
      throw err;
    });
    const differences = fingerprintDifferences(input.expected, actual);
    if (differences.length > 0) {
      // Version 1 is DuckDB's hash(): the node and this worker may run DuckDB releases that differ.
      const hint =
        version === 1
          ? ' (the node computes fingerprint v1, DuckDB hash(), which differs between DuckDB releases; see docs/fingerprint.md)'
          : '';
      throw new VerificationFailed(
        `snapshot of backup ${input.backupId} (${input.path}) failed verification: ${differences.join('; ')}${hint}`,
      );
    }
    return actual;
  }

  /**
   * Streams snapshot → compress → SHA-256 → store. A retry (after a crash or an outage) first
   * removes the unfinished multipart uploads an earlier attempt left, then writes the same key.
   */
  async function storeArtifact(input: StoreArtifactInput): Promise<StoredArtifact> {
    const node = stores.localNode(input.database, input.node);
    const rel = relative(node.dataDir, input.snapshotPath);
    if (rel.startsWith('..') || isAbsolute(rel)) {
      throw new InputProblem(
        'snapshotPath',
        `${input.snapshotPath} is outside node ${node.id}'s data directory ${node.dataDir}`,
      );
    }
    const store = stores.forTier(input.tier, input.database, input.node);
    const key = artifactKey(input.database, input.tier, input.backupId, input.compression);
    const aborted = await store.abortIncompleteUploads(`${backupFolder(input.database, input.tier, input.backupId)}/`);
    if (aborted > 0) log.info('removed unfinished uploads of an earlier attempt', { key, aborted });

    const sourceBytes = (await stat(input.snapshotPath)).size;
    const progress: TransferProgress = { phase: 'upload', bytesDone: 0, bytesTotal: sourceBytes, bytesOut: 0 };
    const ctx = Context.current();
    let lastBeat = 0;
    const beat = (): void => {
      const now = Date.now();
      if (now - lastBeat < 1_000) return;
      lastBeat = now;
      ctx.heartbeat(progress);
    };
    const writeMeter = new Meter((n) => {
      progress.bytesOut = n;
      progress.bytesDone = compression.bytesRead();
      beat();
    });
    const compression = compressFile(input.snapshotPath, input.compression, input.level);
    const stages = input.limitMiBps ? [new Throttle(input.limitMiBps * 1024 * 1024)] : [];
    const compressed = pipeline([compression.stream, ...stages, writeMeter]).catch((err: unknown) => {
      // The upload sees a broken stream; it is the codec's or the disk's error that explains it.
      writeMeter.destroy(err as Error);
      throw err;
    });
    ctx.cancellationSignal.addEventListener('abort', () => compression.stream.destroy(new Error('activity cancelled')));

    await Promise.all([
      store.putArtifact(key, writeMeter, { storageClass: input.storageClass }),
      compressed,
      compression.done,
    ]);
    const sha256 = writeMeter.digest();
    const stored = await store.statObject(key);
    if (!stored || stored.bytes !== writeMeter.bytes) {
      throw new Error(
        `stored artifact ${store.locate(key)} is ${stored ? `${stored.bytes} bytes` : 'missing'} after upload, expected ${writeMeter.bytes} bytes`,
      );
    }
    return { key, location: store.locate(key), bytes: writeMeter.bytes, sourceBytes, sha256 };
  }

  /** Removes the snapshot file once it is stored (or the backup gave up). Idempotent. */
  async function discardSnapshot(input: { path: string }): Promise<void> {
    await rm(input.path, { force: true });
  }

  return { snapshotDatabase, verifySnapshot, storeArtifact, discardSnapshot };
}
