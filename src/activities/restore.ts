/**
 * Activities of a restore. Choosing the node, archive retrieval and retiring the log archive
 * run on the control queue; planning (it reads the node's own L1 catalog), staging (download,
 * SHA-256, decompress, DuckDB verification, log replay) and the file swap run on the node's
 * queue, on the host that owns the database file. The current file is only ever moved aside,
 * never deleted (docs/architecture.md, rule 6).
 */
import { Context } from '@temporalio/activity';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { isAbsolute, join, relative } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { nodeTaskQueue, type Config } from '../config';
import { TIERS, type Tier } from '../domain';
import { InputProblem, Unavailable, VerificationFailed } from '../errors';
import { Meter, decompressToFile } from '../backup/codec';
import { Throttle } from '../backup/throttle';
import { checkBackupContent, describeVerification, type ContentVerification } from '../backup/content-check';
import { v1KnownAnswerOf } from '../backup/fingerprint-sidecar';
import type { Fingerprint, Manifest } from '../backup/manifest';
import { catalogLocations, tierPolicy, type CatalogLocation } from '../backup/tier-policy';
import { decodeSegment, encodeSegment } from '../archive/segment';
import { findPrimary } from '../cluster';
import { currentRecordedFingerprint, fingerprint, fingerprintDifferences } from '../duckdb/fingerprint';
import { openDatabase } from '../duckdb/open';
import { applyEvents } from '../duckdb/replay';
import { SET_STATE_SQL, STATE_LAST_ID, STATE_LSN } from '../duckdb/schema';
import type { DrMetrics } from '../metrics';
import { NodeClient } from '../node-client';
import { RestoreInputSchema, type ParsedRestoreInput } from '../restore/input';
import { parseInstant } from '../restore/instant';
import { planRestore, type RestorePlan, type RestoreTargetKind } from '../restore/plan';
import { contiguousFrom, parseSegmentKey, segmentKey, type LsnRange, type Segment } from '../restore/segments';
import { syncDirectory } from '../storage/local';
import { listManifests } from '../storage/store';
import type { Stores } from '../storage/stores';

/** What the workflow carries of a plan: small, whatever the size of the archive. */
export interface RestorePlanSummary {
  database: string;
  node: { id: string; url: string; dataDir: string; taskQueue: string };
  backup: Manifest;
  targetLsn: number;
  replayFromLsn: number;
  replaySegments: number;
  needsRetrieval: boolean;
  fallbacks: string[];
  reason: string;
  /** What fixed targetLsn (restore/plan.ts). */
  targetKind: RestoreTargetKind;
  /** Acknowledged LSNs this restore cannot bring back (accepted with acceptLoss). */
  lost?: LsnRange;
  /** Batches left out on purpose. */
  excludedLsns?: LsnRange[];
  headLsn?: number;
  /** MiB/s cap on the download (the tier's policy). */
  downloadLimitMiBps?: number;
}

/** The node a restore works on, and every catalog a rewind of its history must reach. */
export interface ResolvedRestore {
  node: { id: string; url: string; dataDir: string; taskQueue: string };
  /** Set when the database is a replicated cluster: an in-place restore changes its topology. */
  cluster?: string;
  catalogs: CatalogLocation[];
}

export interface StagedRestore {
  path: string;
  downloadedBytes: number;
  rows: number;
  lsn: number;
  /** The staged file's fingerprint in the current version: what replay adds to. */
  fingerprint: Fingerprint;
  /** Which fingerprint version of the manifest was compared, and how. */
  verification: ContentVerification;
}

export function createRestoreActivities(deps: { config: Config; stores: Stores; metrics: DrMetrics }) {
  const { config, stores, metrics } = deps;

  /** What a node can restore from: the bucket's tiers and its own L1, never another node's. */
  async function restorableManifests(database: string, node: string): Promise<Manifest[]> {
    const all: Manifest[] = [];
    for (const tier of TIERS) {
      const store = stores.forTier(tier, database, node);
      all.push(...(await listManifests(store, database, tier)).manifests);
    }
    return all;
  }

  async function listSegments(database: string): Promise<Segment[]> {
    const segments: Segment[] = [];
    for (const object of await stores.s3().list(`${database}/log/`)) {
      const range = parseSegmentKey(object.key);
      if (!range) continue;
      const { startLsn, endLsn, epoch } = range;
      segments.push({ startLsn, endLsn, key: object.key, ...(epoch === undefined ? {} : { epoch }) });
    }
    return segments.sort((a, b) => a.startLsn - b.startLsn);
  }

  async function readSegment(segment: Segment) {
    const object = await stores.s3().getBytes(segment.key);
    if (!object) throw new Error(`log segment ${stores.s3().locate(segment.key)} disappeared`);
    return decodeSegment(object.body, stores.s3().locate(segment.key), object.metadata.sha256);
  }

  /** The last LSN whose batch was committed at or before `at` (ts grows with LSN). */
  async function lsnAtTime(segments: Segment[], at: number): Promise<number | undefined> {
    let best: number | undefined;
    let lo = 0;
    let hi = segments.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const events = await readSegment(segments[mid]!);
      const first = events[0];
      if (!first || parseInstant(first.ts)!.micros > at) {
        hi = mid - 1;
        continue;
      }
      for (const e of events) if (parseInstant(e.ts)!.micros <= at) best = e.lsn;
      lo = mid + 1;
    }
    return best;
  }

  /**
   * The node to restore (the named one, else the primary, else the first node) with the queue of
   * its host, and every catalog a rewind of its history must reach.
   */
  async function resolveRestoreTarget(input: { request: ParsedRestoreInput }): Promise<ResolvedRestore> {
    const request = RestoreInputSchema.parse(input.request);
    const db = stores.database(request.database);
    let nodeConfig = db.nodes[0]!;
    if (request.node) {
      const named = db.nodes.find((n) => n.id === request.node);
      if (!named) {
        throw new InputProblem(
          'node',
          `"${request.node}" is not a node of database "${db.name}"; its nodes: ${db.nodes.map((n) => n.id).join(', ')}`,
        );
      }
      nodeConfig = named;
    } else {
      nodeConfig = (await findPrimary(db).catch(() => ({ node: db.nodes[0]! }))).node;
    }
    if (request.scratchDir) {
      const rel = relative(nodeConfig.dataDir, request.scratchDir);
      if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) {
        throw new InputProblem(
          'scratchDir',
          `${request.scratchDir} is outside node ${nodeConfig.id}'s data directory ${nodeConfig.dataDir}; pick a directory inside it`,
        );
      }
    }
    const { id, url, dataDir } = nodeConfig;
    return {
      node: { id, url, dataDir, taskQueue: nodeTaskQueue(config, nodeConfig) },
      ...(db.nodes.length > 1 ? { cluster: db.name } : {}),
      catalogs: catalogLocations(config, db),
    };
  }

  /**
   * Chooses the backup and the log range (restore/plan.ts decides; this gathers the facts) for a
   * node resolved by resolveRestoreTarget. Runs on that node's queue: it reads the node's own L1.
   * `excluded` lists backups found bad during this restore.
   */
  async function planRestoreFor(input: {
    request: ParsedRestoreInput;
    node: string;
    excluded?: string[];
    /** The head the cluster proved acknowledged: "everything" must reach it (planRestore). */
    requiredLsn?: number;
  }): Promise<RestorePlanSummary> {
    const request = RestoreInputSchema.parse(input.request);
    const db = stores.database(request.database);
    const nodeConfig = stores.localNode(db.name, input.node);
    const headLsn = await new NodeClient(nodeConfig.id, nodeConfig.url, undefined, 5_000)
      .health()
      .then((h) => h.lsn)
      .catch(() => undefined);
    const [backups, segments] = await Promise.all([restorableManifests(db.name, nodeConfig.id), listSegments(db.name)]);
    const instant = request.pointInTime ? parseInstant(request.pointInTime) : undefined;
    const targetLsnForTime = instant ? ((await lsnAtTime(segments, instant.micros)) ?? 0) : undefined;
    const result = planRestore({
      backups,
      segments,
      request: { ...request, node: nodeConfig.id },
      now: new Date(),
      targetLsnForTime,
      headLsn,
      excluded: input.excluded,
      ...(input.requiredLsn === undefined ? {} : { requiredLsn: input.requiredLsn }),
    });
    if (!result.ok) throw new InputProblem(result.field, result.message);
    return summarize(result.plan, nodeConfig, headLsn);
  }

  function summarize(
    plan: RestorePlan,
    node: Config['databases'][number]['nodes'][number],
    headLsn?: number,
  ): RestorePlanSummary {
    const { downloadLimitMiBps } = tierPolicy(config, plan.backup.tier, node);
    return {
      database: plan.database,
      node: {
        id: node.id,
        url: node.url,
        dataDir: node.dataDir,
        taskQueue: nodeTaskQueue(config, node),
      },
      backup: plan.backup,
      targetLsn: plan.targetLsn,
      replayFromLsn: plan.backup.snapshot.lsn,
      replaySegments: plan.replay.length,
      needsRetrieval: plan.needsRetrieval,
      fallbacks: plan.fallbacks.map((m) => m.backupId),
      reason: plan.reason,
      targetKind: plan.targetKind,
      ...(plan.lost ? { lost: plan.lost } : {}),
      ...(plan.excludedLsns ? { excludedLsns: plan.excludedLsns } : {}),
      ...(headLsn === undefined ? {} : { headLsn }),
      ...(downloadLimitMiBps === undefined ? {} : { downloadLimitMiBps }),
    };
  }

  /** Asks for an archive-class artifact to be made readable; true once it is. */
  async function retrieveArchived(input: { manifest: Manifest }): Promise<boolean> {
    return stores.s3().retrieveArchived(input.manifest.artifact.key);
  }

  /**
   * Download → SHA-256 → decompress → DuckDB verification, into a staging file on the node's
   * disk. The node keeps serving meanwhile. A mismatch is VerificationFailed (not retried).
   *
   * What proves the staged file: the artifact's SHA-256 equals the manifest's, and the codec's own
   * content checksum (zstd's XXH64, gzip's CRC-32, both checked while decompressing) proves the
   * output is byte for byte the snapshot that was fingerprinted in full when the backup was taken.
   * DuckDB then opens it and its rows, ids, LSNs and recorded checksum must equal the manifest's
   * (a second; no per-row hashing). `fullScan` re-hashes every row as well (seconds per GiB):
   * restore tests and scratch restores do, an in-place restore, where every second is downtime,
   * does not. Either compares in the manifest's fingerprint version (content-check.ts says what
   * happens to a version-1 backup once DuckDB's hash() has changed).
   *
   * Replay and the node that opens the file work in the current fingerprint version: a backup
   * made in an older one is fingerprinted once more here, while the node still serves.
   */
  async function stageBackup(input: {
    manifest: Manifest;
    stagingDir: string;
    fullScan?: boolean;
    /** MiB/s cap on the download, from the plan (the tier's policy). */
    limitMiBps?: number;
  }): Promise<StagedRestore> {
    const m = input.manifest;
    const store = stores.forTier(m.tier as Tier, m.database, m.node);
    await mkdir(input.stagingDir, { recursive: true });
    const path = join(input.stagingDir, `${m.database}.duckdb`);
    await rm(path, { force: true });
    await rm(`${path}.wal`, { force: true });
    const ctx = Context.current();
    const { stream, bytes } = await store.openArtifact(m.artifact.key);
    let lastBeat = 0;
    const meter = new Meter((n) => {
      if (Date.now() - lastBeat < 1_000) return;
      lastBeat = Date.now();
      ctx.heartbeat({ phase: 'download', bytesDone: n, bytesTotal: bytes });
    });
    ctx.cancellationSignal.addEventListener('abort', () => stream.destroy(new Error('activity cancelled')));
    try {
      const throttle = input.limitMiBps ? [new Throttle(input.limitMiBps * 1024 * 1024)] : [];
      const downloaded = pipeline([stream, ...throttle, meter]);
      await Promise.all([downloaded, decompressToFile(meter, m.artifact.compression, path)]);
    } catch (err) {
      if (
        meter.bytes < m.artifact.bytes &&
        !(err instanceof VerificationFailed) &&
        !/zstd|incorrect header|invalid/i.test((err as Error).message)
      ) {
        // Cut off half-way (object gone, network): retried; if the object is gone for good the
        // retries run out and the workflow fails with this message.
        throw new Unavailable(
          `download of ${store.locate(m.artifact.key)} stopped after ${meter.bytes} of ${m.artifact.bytes} bytes: ${(err as Error).message}`,
        );
      }
      throw new VerificationFailed(
        `backup ${m.backupId} failed verification: cannot decompress it: ${(err as Error).message}`,
      );
    }
    const sha256 = meter.digest();
    if (sha256 !== m.artifact.sha256) {
      throw new VerificationFailed(
        `backup ${m.backupId} failed verification: SHA-256 of ${store.locate(m.artifact.key)} is ${sha256}, the manifest says ${m.artifact.sha256}`,
      );
    }
    let check;
    try {
      check = await checkBackupContent(path, m.snapshot, {
        fullScan: input.fullScan ?? false,
        v1KnownAnswer: () => v1KnownAnswerOf(store, m),
      });
    } catch (err) {
      throw new VerificationFailed(`backup ${m.backupId} failed verification: ${(err as Error).message}`);
    }
    if (check.differences.length > 0) {
      throw new VerificationFailed(
        `backup ${m.backupId} failed verification (${describeVerification(check.verification, m.artifact.compression)}): ${check.differences.join('; ')}`,
      );
    }
    return {
      path,
      downloadedBytes: meter.bytes,
      rows: check.found.rows,
      lsn: m.snapshot.lsn,
      fingerprint: await currentFingerprintOf(path),
      verification: check.verification,
    };
  }

  /** Rolls a staged database forward with archived log segments, fromLsn+1 … toLsn. */
  async function replayLog(input: {
    database: string;
    path: string;
    fromLsn: number;
    toLsn: number;
    /** The staged backup's verified fingerprint; replayed rows are added to it. */
    base: Fingerprint;
    /** Batches to leave out (a surgical restore); their LSNs and ids stay used. */
    exclude?: LsnRange[];
  }): Promise<{
    segments: number;
    rows: number;
    reachedLsn: number;
    fingerprint: Fingerprint;
    /** Events left out, per range asked for. */
    leftOut: Array<LsnRange & { events: number; firstId: number | null; lastId: number | null }>;
  }> {
    const ctx = Context.current();
    const coverage = contiguousFrom(await listSegments(input.database), input.fromLsn, input.toLsn);
    if (coverage.reachedLsn < input.toLsn) {
      throw new VerificationFailed(
        `the log archive of ${input.database} stops at LSN ${coverage.reachedLsn}; LSN ${input.toLsn} was planned`,
      );
    }
    const db = await openDatabase(input.path);
    try {
      const c = await db.connect();
      try {
        let rows = 0;
        let lastId = 0;
        const exclude = input.exclude ?? [];
        const leftOut = exclude.map((r) => ({
          ...r,
          events: 0,
          firstId: null as number | null,
          lastId: null as number | null,
        }));
        for (const step of coverage.steps) {
          const inStep = (await readSegment(step.segment)).filter((e) => e.lsn >= step.fromLsn && e.lsn <= step.toLsn);
          const kept = inStep.filter((e) => {
            lastId = Math.max(lastId, e.id);
            const range = leftOut.find((r) => r.fromLsn <= e.lsn && e.lsn <= r.toLsn);
            if (!range) return true;
            range.events++;
            range.firstId ??= e.id;
            range.lastId = e.id;
            return false;
          });
          rows += (await applyEvents(c, kept)).count;
          ctx.heartbeat({ phase: 'replay', bytesDone: 0, bytesTotal: 0 });
        }
        if (exclude.length > 0) {
          // Batches left out at the end must not have their LSNs or ids given out again.
          await c.run(SET_STATE_SQL, [STATE_LSN, String(coverage.reachedLsn)]);
          await c.run(SET_STATE_SQL, [STATE_LAST_ID, String(lastId)]);
        }
        await c.run('CHECKPOINT');
        // The staged file was verified against the backup's fingerprint; only the replayed
        // range needs reading (the checksum adds up range by range).
        const replayed = coverage.steps.length > 0 ? await fingerprint(c, input.toLsn, input.fromLsn) : undefined;
        return {
          segments: coverage.steps.length,
          rows,
          reachedLsn: coverage.reachedLsn,
          fingerprint: replayed ? addFingerprints(input.base, replayed) : input.base,
          leftOut,
        };
      } finally {
        c.closeSync();
      }
    } finally {
      db.close();
    }
  }

  function nodeClient(database: string, nodeId: string): NodeClient {
    const node = stores.node(database, nodeId);
    return new NodeClient(node.id, node.url, config.nodeAuth.token);
  }

  /** Maintenance on or off; off answers with the fingerprint and LSN of the file the node opened. */
  async function setMaintenance(input: {
    database: string;
    node: string;
    enabled: boolean;
    reason?: string;
  }): Promise<{ lsn?: number; fingerprint?: Fingerprint }> {
    const answer = await nodeClient(input.database, input.node).maintenance(input.enabled, input.reason);
    return { lsn: answer.lsn, fingerprint: answer.fingerprint };
  }

  /**
   * With the node in maintenance (file closed): the current file (and its WAL, which DuckDB would
   * replay onto the restored file) moves aside to <db>.corrupted.<time>, the staged file takes
   * its place. Returns where the original went, for the compensation.
   */
  async function swapIn(input: {
    database: string;
    node: string;
    stagedPath: string;
    stamp: string;
  }): Promise<{ asidePath?: string }> {
    const node = stores.localNode(input.database, input.node);
    const live = join(node.dataDir, `${input.database}.duckdb`);
    const aside = `${live}.corrupted.${input.stamp}`;
    const hadLive = await exists(live);
    if (hadLive && !(await exists(aside))) await rename(live, aside);
    if (await exists(`${live}.wal`)) await rename(`${live}.wal`, `${aside}.wal`);
    if (await exists(input.stagedPath)) await rename(input.stagedPath, live);
    await syncDirectory(node.dataDir);
    return hadLive || (await exists(aside)) ? { asidePath: aside } : {};
  }

  /** Compensation: the original file goes back where it was; the restored one is removed. */
  async function swapBack(input: { database: string; node: string; asidePath: string }): Promise<void> {
    const node = stores.localNode(input.database, input.node);
    const live = join(node.dataDir, `${input.database}.duckdb`);
    if (!(await exists(input.asidePath))) return;
    await rm(live, { force: true });
    await rm(`${live}.wal`, { force: true });
    await rename(input.asidePath, live);
    if (await exists(`${input.asidePath}.wal`)) await rename(`${input.asidePath}.wal`, `${live}.wal`);
    await syncDirectory(node.dataDir);
  }

  /**
   * After a restore to an earlier LSN the node writes a new history from there: archived segments
   * past that LSN belong to the abandoned one. They move to <db>/log-retired/<tag>/ (kept, not
   * deleted), a segment straddling the LSN is cut at it, and the archive continues from the
   * restored LSN. Idempotent: a retry finds what is already retired gone from the log. (Backups
   * after that LSN are marked bad by markBackupsBadAfter, in each catalog where it lives.)
   */
  async function retireArchiveAfter(input: { database: string; lsn: number; tag: string }): Promise<number> {
    const s3 = stores.s3();
    let retired = 0;
    for (const segment of await listSegments(input.database)) {
      if (segment.endLsn <= input.lsn) continue;
      const object = await s3.getBytes(segment.key);
      if (!object) continue;
      if (segment.startLsn <= input.lsn) {
        const kept = (await decodeSegment(object.body, segment.key, object.metadata.sha256)).filter(
          (e) => e.lsn <= input.lsn,
        );
        const cut = await encodeSegment(kept);
        await s3.putBytes(segmentKey(input.database, segment.startLsn, input.lsn, segment.epoch ?? 1), cut.body, {
          sha256: cut.sha256,
          rows: String(cut.rows),
          'first-ts': cut.firstTs,
          'last-ts': cut.lastTs,
        });
      }
      const name = segment.key.slice(segment.key.lastIndexOf('/') + 1);
      await s3.putBytes(`${input.database}/log-retired/${input.tag}/${name}`, object.body, object.metadata);
      await s3.deleteKeys([segment.key]);
      retired++;
    }
    return retired;
  }

  async function removeStaging(input: { stagingDir: string }): Promise<void> {
    await rm(input.stagingDir, { recursive: true, force: true });
  }

  /**
   * After the swap: the node opened exactly what was restored. Its answer to "maintenance off"
   * carries the rows, ids, LSN and recorded checksum of the file it opened, compared here with
   * what the staged file should hold.
   */
  async function checkRestored(input: {
    node: string;
    lsn: number;
    fingerprint: Fingerprint;
    opened: { lsn?: number; fingerprint?: Fingerprint };
  }): Promise<void> {
    const problems = input.opened.fingerprint
      ? fingerprintDifferences(input.fingerprint, input.opened.fingerprint)
      : ['the node did not report what it opened'];
    if (input.opened.lsn !== input.lsn) problems.push(`lsn: expected ${input.lsn}, found ${input.opened.lsn}`);
    if (problems.length > 0)
      throw new VerificationFailed(`node ${input.node} after the restore: ${problems.join('; ')}`);
  }

  async function recordRestoreTestOutcome(input: { database: string; tier: Tier; passed: boolean }): Promise<void> {
    metrics.restoreTestPassed.set({ database: input.database, tier: input.tier }, input.passed ? 1 : 0);
    if (input.passed) metrics.restoreTestLastRun.set({ database: input.database }, Date.now() / 1000);
  }

  async function recordRestoreMetrics(input: { database: string; rtoSeconds: number; test: boolean }): Promise<void> {
    // A restore test measures how long a restore takes, but is not a restore of the service.
    if (!input.test) metrics.rtoSeconds.set({ database: input.database }, input.rtoSeconds);
  }

  return {
    /** Need no node's disk: the control queue. */
    control: {
      resolveRestoreTarget,
      retrieveArchived,
      retireArchiveAfter,
      recordRestoreMetrics,
      recordRestoreTestOutcome,
    },
    /** On the restored node's queue, on the host that owns its files. */
    node: {
      planRestoreFor,
      stageBackup,
      replayLog,
      setMaintenance,
      swapIn,
      swapBack,
      removeStaging,
      checkRestored,
    },
  };
}

/**
 * The staged file's recorded fingerprint in the current version, computed and recorded first if
 * it has none in it. Checkpointed: the file moves into place without its WAL.
 */
async function currentFingerprintOf(path: string): Promise<Fingerprint> {
  const db = await openDatabase(path);
  try {
    const c = await db.connect();
    try {
      const current = await currentRecordedFingerprint(c);
      if (current.upgradedFrom !== undefined) await c.run('CHECKPOINT');
      return current.fingerprint;
    } finally {
      c.closeSync();
    }
  } finally {
    db.close();
  }
}

function addFingerprints(a: Fingerprint, b: Fingerprint): Fingerprint {
  if (a.fingerprintVersion !== b.fingerprintVersion) {
    throw new Error(`cannot add a fingerprint v${b.fingerprintVersion} to a v${a.fingerprintVersion} one`);
  }
  if (b.rows === 0) return a;
  return {
    fingerprintVersion: a.fingerprintVersion,
    rows: a.rows + b.rows,
    minId: a.minId === null ? b.minId : Math.min(a.minId, b.minId ?? a.minId),
    maxId: Math.max(a.maxId ?? 0, b.maxId ?? 0),
    maxLsn: Math.max(a.maxLsn ?? 0, b.maxLsn ?? 0),
    checksum: (BigInt(a.checksum) + BigInt(b.checksum)).toString(),
  };
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
