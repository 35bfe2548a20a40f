/**
 * Workflow `pruneBackups`: applies a tier's retention now, in each of the tier's catalogs where
 * it lives: the bucket's from the control queue, each node's L1 on that node's own queue (only
 * its host can open the directory). With `dryRun` it deletes nothing and says what it would.
 *
 * Input (paste into the Temporal UI): { "tier": "L1", "dryRun": true }
 */
import { upsertSearchAttributes } from '@temporalio/workflow';
import type { PruneResult } from '../activities';
import { PruneInputSchema, type PruneInput } from '../backup/prune-input';
import { explainFailure } from './failure';
import { inputOrFail } from './input';
import { catalogAt, control } from './proxies';
import { DrDatabase, DrTier } from './search-attributes';

/** What retention did in one catalog; `node` names the node of an L1 catalog. */
export type CatalogPruneResult = PruneResult & { node?: string };

export async function pruneBackups(input: PruneInput): Promise<CatalogPruneResult[]> {
  const { database, tier, node, dryRun } = inputOrFail(PruneInputSchema, input, 'pruneBackups');
  upsertSearchAttributes([
    { key: DrDatabase, value: database },
    { key: DrTier, value: tier },
  ]);
  try {
    const catalogs = await control.resolveCatalogs({ database, tier, node });
    return await Promise.all(
      catalogs.map(async (c) => {
        const result = await catalogAt(c.taskQueue).pruneTier({ database, tier, node: c.node, dryRun });
        return c.node === undefined ? result : { node: c.node, ...result };
      }),
    );
  } catch (err) {
    throw explainFailure(err, `pruning the ${tier} backups of ${database} failed`, 'PruneFailed');
  }
}
