/** Inputs of failoverRegion and failbackRegion: plain JSON for the Temporal UI. */
import { z } from 'zod';
import { NameSchema } from '../domain';

const CONFIRM_RULE =
  'must be true: moving the primary to another region fences the region that holds it now (type it to show you mean it)';

const regionMove = {
  /** The database whose nodes form the cluster; default: the first with several nodes. */
  cluster: NameSchema.optional(),
  /** The declared region that takes the primary. */
  toRegion: NameSchema,
  reason: z.string().min(1).max(500).optional(),
  confirm: z.literal(true, { error: CONFIRM_RULE }),
};

export const FailoverRegionInputSchema = z
  .object({
    ...regionMove,
    /**
     * Take over although a node of the region that holds the primary still answers (it is fenced
     * all the same: its leadership lease is waited out and its epoch superseded).
     */
    force: z.boolean().default(false),
  })
  .strict();
export type FailoverRegionInput = z.input<typeof FailoverRegionInputSchema>;

export const FailbackRegionInputSchema = z
  .object({
    ...regionMove,
    /**
     * The holder of the topology lease the failback's switchover runs under (a drill that holds
     * it while it heals); left out, the switchover takes the lease itself.
     */
    underLease: z.string().min(1).optional(),
  })
  .strict();
export type FailbackRegionInput = z.input<typeof FailbackRegionInputSchema>;

/** One region move per cluster at a time, on each region's Temporal. */
export const regionFailoverWorkflowId = (cluster: string) => `region-failover-${cluster}`;
export const regionFailbackWorkflowId = (cluster: string) => `region-failback-${cluster}`;
