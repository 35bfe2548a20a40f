/**
 * Workflow `copyToRegion`: keeps a standby region's object store a copy of the primary region's,
 * one per standby region (id region-copy-<region>). Each pass copies what was sealed since the
 * last (artifacts, manifests, log segments) and removes what the primary no longer holds; passes
 * follow each other every `copyInterval` of the region, and the workflow continues as new every
 * few hundred passes so its history stays small. `region_copy_lag_seconds` says how far behind
 * the standby was at the last pass. While a region failover has the standby region run the
 * cluster, the passes go the other way (the standby's store copied here), so the home region keeps
 * the new history too; once the primary is back, the copy ends and failbackRegion restarts it after
 * one more pass of its own. It also ends when the primary is in a third region. The copy carries
 * removals, so it never copies from the region that is not running the cluster.
 *
 * Input (paste into the Temporal UI): { "region": "b" }
 */
import { continueAsNew, proxyActivities, sleep, upsertSearchAttributes } from '@temporalio/workflow';
import { z } from 'zod';
import type { ControlActivities } from '../activities';
import { NameSchema } from '../domain';
import { explainFailure } from './failure';
import { inputOrFail } from './input';
import { DrScenario } from './search-attributes';

export const CopyToRegionInputSchema = z
  .object({
    region: NameSchema,
    /** Set by the workflow itself: it has copied from the region (it ran the cluster). */
    pulled: z.boolean().default(false),
  })
  .strict();
export type CopyToRegionInput = z.input<typeof CopyToRegionInputSchema>;

export { regionCopyWorkflowId } from '../region/copy-plan';

const PASSES_PER_RUN = 200;

const copier = proxyActivities<ControlActivities>({
  startToCloseTimeout: '6h',
  heartbeatTimeout: '2m',
  // A daemon: a store that is down (either region's) is waited for, with backoff, forever.
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m' },
});

export async function copyToRegion(input: CopyToRegionInput): Promise<{ stoodDown: string }> {
  const { region, pulled: pulledBefore } = inputOrFail(CopyToRegionInputSchema, input, 'copyToRegion');
  upsertSearchAttributes([{ key: DrScenario, value: 'region-copy' }]);
  let pulled = pulledBefore;
  for (let pass = 0; pass < PASSES_PER_RUN; pass++) {
    const done = await copier.copyToRegionPass({ region, pulled }).catch((err: unknown) => {
      throw explainFailure(err, `the copy with region ${region} stopped`, 'RegionCopyFailed');
    });
    // The cluster is run from a third region, or is back here after this copy pulled: copying
    // from here now could undo what the other region wrote.
    if (done.stoodDown) return { stoodDown: done.stoodDown };
    pulled ||= done.direction === 'from';
    await sleep(done.intervalMs);
  }
  return continueAsNew<typeof copyToRegion>({ region, pulled });
}
