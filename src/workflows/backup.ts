/**
 * Workflow `backup`: snapshot → verify → compress + SHA-256 → store → manifest → prune → metrics.
 *
 * Input (paste into the Temporal UI): { "database": "kimiclaw", "tier": "L2", "reason": "manual" }
 */
import {
  CancellationScope,
  isCancellation,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { BackupTarget, PruneResult } from '../activities';
import { BackupInputSchema, type BackupInput } from '../backup/input';
import { backupId as makeBackupId } from '../backup/ids';
import type { Manifest } from '../backup/manifest';
import { backupStatusQuery, type BackupStatus } from './messages';
import { catalogAt, control, onNode } from './proxies';
import { DrBackupId, DrDatabase, DrOutcome, DrTier } from './search-attributes';
import { explainFailure, failureMessage } from './failure';
import { inputOrFail } from './input';

export interface BackupResult {
  backupId: string;
  database: string;
  tier: string;
  node: string;
  location: string;
  manifest: string;
  bytesBefore: number;
  bytesAfter: number;
  compression: string;
  rows: number;
  lsn: number;
  sha256: string;
  /** The fingerprint version the snapshot was verified in and the manifest records. */
  fingerprintVersion: number;
  durationSeconds: number;
  writeStallMs: number;
  startedAt: string;
  completedAt: string;
  pruned: PruneResult | { error: string };
  reason?: string;
}

export async function backup(input: BackupInput): Promise<BackupResult> {
  const started = new Date();
  const { database, tier, reason, node: requestedNode } = inputOrFail(BackupInputSchema, input, 'backup');
  const status: BackupStatus = { database, tier, phase: 'resolve', startedAt: started.toISOString() };
  setHandler(backupStatusQuery, () => status);
  upsertSearchAttributes([
    { key: DrDatabase, value: database },
    { key: DrTier, value: tier },
  ]);

  const step = async <T>(phase: string, work: () => Promise<T>): Promise<T> => {
    status.phase = phase;
    try {
      return await work();
    } catch (err) {
      if (isCancellation(err)) throw err;
      status.phase = 'failed';
      upsertSearchAttributes([{ key: DrOutcome, value: 'failed' }]);
      await CancellationScope.nonCancellable(() =>
        control.recordBackupFailure({ database, tier, step: phase }).catch(() => undefined),
      );
      throw explainFailure(
        err,
        `backup ${status.backupId ?? `of ${database} ${tier}`} failed at ${phase}`,
        'BackupFailed',
      );
    }
  };

  const target: BackupTarget = await step('resolve', () =>
    control.resolveBackupTarget({ database, tier, node: requestedNode }),
  );
  const { policy } = target;
  const storage = policy.inBucket ? await step('check storage', () => control.checkStorage()) : undefined;
  const objectLock = policy.lockable && (storage?.objectLock ?? false);

  const id = makeBackupId(database, tier, started, workflowInfo().runId);
  status.backupId = id;
  status.node = target.node.id;
  upsertSearchAttributes([{ key: DrBackupId, value: id }]);
  const node = onNode(target.node.taskQueue);
  const catalog = catalogAt(policy.catalog.taskQueue);

  let snapshotPath: string | undefined;
  try {
    const snapshot = await step('snapshot', () =>
      node.long.snapshotDatabase({ database, node: target.node.id, backupId: id }),
    );
    snapshotPath = snapshot.path;
    const fingerprint = {
      rows: snapshot.rows,
      minId: snapshot.minId,
      maxId: snapshot.maxId,
      maxLsn: snapshot.maxLsn,
      checksum: snapshot.checksum,
      fingerprintVersion: snapshot.fingerprintVersion,
    };

    // Verification and upload read the same snapshot file side by side; the manifest, the
    // commit point, is written only when both succeeded. A failed verification cancels the
    // upload and removes whatever it stored.
    const retainUntil = objectLock ? new Date(started.getTime() + policy.retentionMs).toISOString() : undefined;
    const uploadScope = new CancellationScope();
    const uploading = uploadScope.run(() =>
      node.long.storeArtifact({
        database,
        tier,
        node: target.node.id,
        backupId: id,
        snapshotPath: snapshot.path,
        compression: target.compression,
        level: target.level,
        storageClass: policy.storageClass,
        limitMiBps: policy.uploadLimitMiBps,
      }),
    );
    uploading.catch(() => undefined);
    try {
      await step('verify', () =>
        node.long.verifySnapshot({ path: snapshot.path, expected: fingerprint, backupId: id }),
      );
    } catch (err) {
      uploadScope.cancel();
      await CancellationScope.nonCancellable(async () => {
        await uploading.catch(() => undefined);
        await catalog.discardUncommitted({ database, tier, node: target.node.id, backupId: id }).catch(() => undefined);
      });
      throw err;
    }
    const verifiedAt = new Date().toISOString();
    const stored = await step('store', () => uploading);
    if (retainUntil) {
      await step('lock', () => control.lockArtifact({ key: stored.key, mode: target.objectLockMode, retainUntil }));
    }

    const info = workflowInfo();
    const manifest: Manifest = {
      format: 1,
      backupId: id,
      database,
      tier,
      node: target.node.id,
      createdAt: started.toISOString(),
      completedAt: new Date().toISOString(),
      workflowId: info.workflowId,
      runId: info.runId,
      snapshot: {
        ...fingerprint,
        lsn: snapshot.lsn,
        bytes: snapshot.bytes,
        stallMs: snapshot.stallMs,
        ...(snapshot.epoch === undefined ? {} : { epoch: snapshot.epoch }),
      },
      artifact: {
        key: stored.key,
        compression: target.compression,
        level: target.level,
        bytes: stored.bytes,
        sha256: stored.sha256,
        ...(policy.storageClass ? { storageClass: policy.storageClass } : {}),
        ...(retainUntil ? { retainUntil } : {}),
      },
      verifiedAt,
    };
    const written = await step('manifest', () => catalog.writeManifest(manifest));

    // The backup is committed; a failing prune is reported, not a failed backup.
    status.phase = 'prune';
    const pruned: BackupResult['pruned'] = await catalog
      .pruneTier({ database, tier, node: target.node.id, protect: [id] })
      .catch((err: unknown) => ({ error: failureMessage(err) }));

    const completed = new Date();
    const durationSeconds = (completed.getTime() - started.getTime()) / 1000;
    status.phase = 'metrics';
    await catalog.recordBackupMetrics({
      database,
      tier,
      completedAt: completed.toISOString(),
      durationSeconds,
      storedBytes: stored.bytes,
      sourceBytes: stored.sourceBytes,
    });
    status.phase = 'done';
    upsertSearchAttributes([{ key: DrOutcome, value: 'success' }]);
    return {
      backupId: id,
      database,
      tier,
      node: target.node.id,
      location: stored.location,
      manifest: written.location,
      bytesBefore: stored.sourceBytes,
      bytesAfter: stored.bytes,
      compression: target.compression,
      rows: snapshot.rows,
      lsn: snapshot.lsn,
      sha256: stored.sha256,
      fingerprintVersion: fingerprint.fingerprintVersion,
      durationSeconds,
      writeStallMs: snapshot.stallMs,
      startedAt: started.toISOString(),
      completedAt: completed.toISOString(),
      pruned,
      ...(reason ? { reason } : {}),
    };
  } finally {
    if (snapshotPath) {
      const path = snapshotPath;
      await CancellationScope.nonCancellable(() => node.quick.discardSnapshot({ path }).catch(() => undefined));
    }
  }
}
