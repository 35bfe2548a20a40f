/**
 * Queries and signals, defined once here so the workflows and every client (CLI, other services)
 * share typed handles.
 */
import { defineQuery } from '@temporalio/workflow';

export interface BackupStatus {
  backupId?: string;
  database: string;
  tier: string;
  /** resolve → snapshot → verify → store → manifest → prune → done | failed */
  phase: string;
  startedAt: string;
  node?: string;
}

export const backupStatusQuery = defineQuery<BackupStatus>('backupStatus');
