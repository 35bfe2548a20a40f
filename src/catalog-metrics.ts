/**
 * Fills the backup gauges from the catalog at worker start: the newest backup of each tier is
 * what `backup_last_success_timestamp` must report, whichever worker wrote it. L1 is read only
 * for the nodes on this host (their workers report it, as they do when a backup completes); the
 * bucket's tiers by every worker.
 */
import type { Config } from './config';
import { TIERS } from './domain';
import type { DrMetrics } from './metrics';
import { listManifests, type BackupStore } from './storage/store';
import type { Stores } from './storage/stores';

export async function loadCatalogMetrics(config: Config, stores: Stores, metrics: DrMetrics): Promise<void> {
  for (const db of config.databases) {
    for (const tier of TIERS) {
      const catalogs: BackupStore[] =
        tier === 'L1' ? stores.localNodesOf(db.name).map((n) => stores.local(db.name, n.id)) : [stores.s3()];
      for (const store of catalogs) {
        const newest = (await listManifests(store, db.name, tier)).manifests.find((m) => !m.bad);
        if (!newest) continue;
        metrics.recordBackup({
          database: db.name,
          tier,
          completedAt: new Date(newest.completedAt),
          durationSeconds: (Date.parse(newest.completedAt) - Date.parse(newest.createdAt)) / 1000,
          storedBytes: newest.artifact.bytes,
          sourceBytes: newest.snapshot.bytes,
        });
      }
    }
  }
}
