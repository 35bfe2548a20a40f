/**
 * The activities, built from their dependencies (config, stores, metrics) so tests hand in real
 * ones pointed at local servers, in two sets with their own types: the control set (no node's
 * disk: the bucket, the config center, nodes over HTTP) on the control queue, and per node the
 * node set (its disk: snapshot, L1, staging, the swap) on that node's queue. A workflow proxies
 * each set by its type, so node work asked of the control queue does not compile; and each set's
 * stores reach only its own disks, so a call routed to the wrong node's queue throws.
 */
import type { Config } from '../config';
import type { DrMetrics } from '../metrics';
import type { Stores } from '../storage/stores';
import { createArchiveActivities } from './archive';
import { createArtifactActivities } from './artifacts';
import { createCatalogActivities, createTierCatalogActivities } from './catalog';
import { createClusterActivities } from './cluster';
import { createDrillActivities, createDrillHostActivities } from './drill';
import { createDrillStackActivities } from './drill-stack';
import { createFaultActivities } from './fault';
import { createLeaseActivities } from './lease';
import { createRebuildActivities } from './rebuild';
import { createRegionActivities } from './region';
import { createRegionFailoverActivities } from './region-failover';
import { createRestoreActivities } from './restore';
import { classifyFailures } from './failures';

export interface ActivityDeps {
  config: Config;
  stores: Stores;
  metrics: DrMetrics;
}

/** The control queue's activities: they reach the bucket, never a node's disk. */
export function createControlActivities(deps: ActivityDeps) {
  const control = { ...deps, stores: deps.stores.restrictedTo([]) };
  const cluster = createClusterActivities(control);
  return classifyFailures({
    ...createCatalogActivities(control),
    ...createTierCatalogActivities(control),
    ...createArchiveActivities(control),
    ...createRestoreActivities(control).control,
    ...cluster,
    ...createLeaseActivities(control),
    ...createRebuildActivities(control),
    ...createRegionActivities(control),
    ...createRegionFailoverActivities(control),
    ...createDrillActivities({ ...control, clusterStatus: cluster.clusterStatus }),
  });
}

/** The activities of one node's queue: that node's disk (and the bucket), nothing else. */
export function createNodeActivities(deps: ActivityDeps & { node: string }) {
  const local = { ...deps, stores: deps.stores.restrictedTo([deps.node]) };
  return classifyFailures({
    ...createTierCatalogActivities(local),
    ...createArtifactActivities(local),
    ...createRestoreActivities(local).node,
    ...createFaultActivities(local),
    ...createDrillHostActivities(local),
    ...createDrillStackActivities(local),
  });
}

export type ControlActivities = ReturnType<typeof createControlActivities>;
export type NodeActivities = ReturnType<typeof createNodeActivities>;
/** One tier's catalog, in both sets: called on the queue its CatalogLocation names. */
export type CatalogActivities = ReturnType<typeof createTierCatalogActivities>;
export type { BackupTarget, PruneResult } from './catalog';
export type { StoredArtifact, TransferProgress } from './artifacts';
export type { ArchivePosition } from './archive';
export type { ResolvedRestore, RestorePlanSummary, StagedRestore } from './restore';
export type { CatalogLocation, TierPolicy } from '../backup/tier-policy';
