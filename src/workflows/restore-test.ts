/**
 * Workflow `restoreTest`: proves the newest backup of a tier can be restored. It asks each of the
 * tier's catalogs for its newest backup where it lives (the bucket's on the control queue, each
 * node's L1 on that node's queue), restores the newest of them to a scratch location on a node's
 * host (an L1 backup on the node that holds it; a child `restore`: download, SHA-256, DuckDB
 * verification against the manifest; the child discards the copy), and checks the result is that
 * backup, whole. A failure is loud: the workflow fails with the reason and restore_test_passed
 * drops to 0.
 *
 * Input (paste into the Temporal UI): { "tier": "L2" }
 */
import { ApplicationFailure, executeChild, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { Manifest } from '../backup/manifest';
import { RestoreTestInputSchema, type RestoreTestInput } from '../restore/test-input';
import { catalogAt, control } from './proxies';
import { restore, type RestoreResult } from './restore';
import { DrBackupId, DrDatabase, DrOutcome, DrScenario, DrTier } from './search-attributes';
import { inputOrFail } from './input';

export interface RestoreTestResult {
  database: string;
  tier: string;
  backupId: string;
  rows: number;
  lsn: number;
  /** How the backup was verified: its fingerprint version, and whether a checksum was compared. */
  verification: RestoreResult['verification'];
  seconds: number;
}

export async function restoreTest(input: RestoreTestInput = {}): Promise<RestoreTestResult> {
  const { database, tier } = inputOrFail(RestoreTestInputSchema, input, 'restoreTest');
  upsertSearchAttributes([
    { key: DrDatabase, value: database },
    { key: DrTier, value: tier },
    { key: DrScenario, value: 'restore-test' },
  ]);
  const started = Date.now();
  let backup: Manifest | undefined;
  let restored: RestoreResult | undefined;
  try {
    const found = await Promise.all(
      (await control.resolveCatalogs({ database, tier })).map(async (c) => ({
        node: c.node,
        manifest: await catalogAt(c.taskQueue).newestBackup({ database, tier, node: c.node }),
      })),
    );
    const newest = found
      .filter((f): f is { node: string | undefined; manifest: Manifest } => f.manifest !== null)
      .sort((a, b) => b.manifest.createdAt.localeCompare(a.manifest.createdAt))[0];
    if (!newest) throw new Error(`database "${database}" has no verified ${tier} backup to test`);
    backup = newest.manifest;
    upsertSearchAttributes([{ key: DrBackupId, value: backup.backupId }]);
    restored = await executeChild(restore, {
      workflowId: `${workflowInfo().workflowId}-restore`,
      args: [
        {
          database,
          backupId: backup.backupId,
          toLsn: backup.snapshot.lsn,
          target: 'scratch',
          ...(newest.node === undefined ? {} : { node: newest.node }),
        },
        { test: true },
      ],
    });
    const problems = [
      restored.backupId !== backup.backupId
        ? `the restore used ${restored.backupId}: ${restored.fellBackFrom.map((f) => f.reason).join('; ')}`
        : '',
      restored.rows !== backup.snapshot.rows
        ? `rows: manifest says ${backup.snapshot.rows}, restored ${restored.rows}`
        : '',
      restored.finalLsn !== backup.snapshot.lsn
        ? `LSN: manifest says ${backup.snapshot.lsn}, restored ${restored.finalLsn}`
        : '',
    ].filter(Boolean);
    if (problems.length > 0) throw new Error(problems.join('; '));
  } catch (err) {
    await control.recordRestoreTestOutcome({ database, tier, passed: false });
    upsertSearchAttributes([{ key: DrOutcome, value: 'failed' }]);
    // A failed child restore carries its own explanation one level down.
    const reason = (err as { cause?: Error }).cause?.message ?? (err as Error).message;
    throw ApplicationFailure.create({
      type: 'RestoreTestFailed',
      message: `restore test of ${backup?.backupId ?? `the newest ${tier} backup of ${database}`} failed: ${reason}`,
      nonRetryable: true,
    });
  }
  await control.recordRestoreTestOutcome({ database, tier, passed: true });
  upsertSearchAttributes([{ key: DrOutcome, value: 'success' }]);
  return {
    database,
    tier,
    backupId: backup.backupId,
    rows: restored.rows ?? 0,
    lsn: restored.finalLsn,
    verification: restored.verification,
    seconds: (Date.now() - started) / 1000,
  };
}
