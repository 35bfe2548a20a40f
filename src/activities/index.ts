/**
 * All activities, built from their dependencies (config, stores, metrics) so tests hand in real
 * ones pointed at local servers. The same object is registered on the control queue and on each
 * node queue; the workflow routes each call to the queue whose host can do it.
 */
import type { Config } from '../config';
import type { DrMetrics } from '../metrics';
import type { Stores } from '../storage/stores';
import { createArchiveActivities } from './archive';
import { createArtifactActivities } from './artifacts';
import { createCatalogActivities } from './catalog';
import { createClusterActivities } from './cluster';
import { createRestoreActivities } from './restore';
import { classifyFailures } from './failures';

export interface ActivityDeps {
  config: Config;
  stores: Stores;
  metrics: DrMetrics;
}

export function createActivities(deps: ActivityDeps) {
  return classifyFailures({
    ...createCatalogActivities(deps),
    ...createArtifactActivities(deps),
    ...createArchiveActivities(deps),
    ...createRestoreActivities(deps),
    ...createClusterActivities(deps),
  });
}

export type Activities = ReturnType<typeof createActivities>;
export type { BackupTarget, PruneResult } from './catalog';
export type { StoredArtifact, TransferProgress } from './artifacts';
export type { ArchivePosition } from './archive';
export type { RestorePlanSummary, StagedRestore } from './restore';
