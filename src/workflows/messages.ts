/**
 * Queries and signals, defined once here so the workflows and every client (CLI, other services)
 * share typed handles.
 */
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { DrillScenario } from '../drill/input';

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

/** What `drillState` answers: the drill waiting for its confirmation shows the cluster it checked. */
export interface DrillState {
  phase: 'starting' | 'awaiting-confirmation' | 'running';
  /** The steady-state check's summary, while awaiting the confirmation. */
  steady?: string;
  scenarios?: DrillScenario[];
}
export const drillStateQuery = defineQuery<DrillState>('drillState');
/** Confirms a production drill started without "confirmed", after its steady-state check. */
export const confirmDrillSignal = defineSignal('confirm');
