/**
 * Workflow `restoreTest`: proves the newest backup of a tier can be restored. It restores it to a
 * scratch location on the node's host (a child `restore`: download, SHA-256, DuckDB verification
 * against the manifest; the child discards the copy), and checks the result is that backup, whole. A failure is
 * loud: the workflow fails with the reason and restore_test_passed drops to 0.
 *
 * Input (paste into the Temporal UI): { "tier": "L2" }
 */
import { ApplicationFailure, executeChild, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { Manifest } from '../backup/manifest';
import { RestoreTestInputSchema, type RestoreTestInput } from '../restore/test-input';
import { control } from './proxies';
import { restore, type RestoreResult } from './restore';
import { DrBackupId, DrDatabase, DrOutcome, DrScenario, DrTier } from './search-attributes';
import { inputOrFail } from './input';

export interface RestoreTestResult {
  database: string;
  tier: string;
  backupId: string;
  rows: number;
  lsn: number;
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
    backup = await control.newestBackup({ database, tier });
    upsertSearchAttributes([{ key: DrBackupId, value: backup.backupId }]);
    restored = await executeChild(restore, {
      workflowId: `${workflowInfo().workflowId}-restore`,
      args: [{ database, backupId: backup.backupId, toLsn: backup.snapshot.lsn, target: 'scratch' }, { test: true }],
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
    rows: restored.rows,
    lsn: restored.finalLsn,
    seconds: (Date.now() - started) / 1000,
  };
}
