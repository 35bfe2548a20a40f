/**
 * Everything that depends on a backup's tier, decided in one place: where its catalog lives and
 * which task queue can reach it, whether its store is the bucket, Object Lock, storage class,
 * retention and transfer limits. L1 lives on the node's own disk, so only the worker on that
 * node's host (its task queue) reads or writes it; L2 and L3 live in the bucket, reachable from
 * the control queue.
 */
import { homeRegion, nodeTaskQueue, type Config, type DatabaseConfig, type NodeConfig } from '../config';
import { TIERS, type Tier } from '../domain';

/** One catalog of backups: a tier's manifests in one store, and the queue whose worker reaches it. */
export interface CatalogLocation {
  tier: Tier;
  /** The node whose disk holds it (L1 only). */
  node?: string;
  taskQueue: string;
}

export interface TierPolicy {
  catalog: CatalogLocation;
  /** The store is the bucket: it must answer before a snapshot is taken. */
  inBucket: boolean;
  /** Verified artifacts get Object Lock retention, when the bucket enforces it (the archive tier). */
  lockable: boolean;
  retentionMs: number;
  storageClass?: string;
  /** Off-site transfers share the uplink with the service; L1 never leaves the disk. */
  uploadLimitMiBps?: number;
  downloadLimitMiBps?: number;
}

/** Where the catalog of a tier's backups taken on `node` lives. */
export function catalogLocation(config: Config, tier: Tier, node: NodeConfig): CatalogLocation {
  return tier === 'L1'
    ? { tier, node: node.id, taskQueue: nodeTaskQueue(config, node) }
    : { tier, taskQueue: config.temporal.taskQueue };
}

/** Every catalog of a database: one per node for L1, the bucket's for L2 and L3. */
/**
 * Every catalog of the database this worker's region reaches: the bucket's tiers, and the L1 of
 * each node in this region (another region's node disks are served by that region's workers, on
 * its own Temporal: a task for them here would wait forever).
 */
export function catalogLocations(
  config: Config,
  db: DatabaseConfig,
  tiers: readonly Tier[] = TIERS,
): CatalogLocation[] {
  const home = homeRegion(config);
  const here = (n: NodeConfig) => home === undefined || (n.region ?? config.regions?.primary) === home;
  return tiers.flatMap((tier) =>
    tier === 'L1'
      ? db.nodes.filter(here).map((n) => catalogLocation(config, tier, n))
      : [catalogLocation(config, tier, db.nodes[0]!)],
  );
}

export function tierPolicy(config: Config, tier: Tier, node: NodeConfig): TierPolicy {
  const { storage } = config;
  const policy: TierPolicy = {
    catalog: catalogLocation(config, tier, node),
    inBucket: tier !== 'L1',
    lockable: tier === 'L3',
    retentionMs: config.backup.retention[tier],
  };
  if (tier === 'L1') return policy;
  return {
    ...policy,
    storageClass: storage.storageClass[tier],
    ...(storage.uploadLimitMiBps ? { uploadLimitMiBps: storage.uploadLimitMiBps } : {}),
    ...(storage.downloadLimitMiBps ? { downloadLimitMiBps: storage.downloadLimitMiBps } : {}),
  };
}
