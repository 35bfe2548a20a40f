/**
 * Input of the `pruneBackups` workflow (the CLI's `backups prune`): a plain JSON object an
 * operator can paste into the Temporal UI. Pure: workflow code imports it.
 */
import { z } from 'zod';
import { DEFAULT_DATABASE, NameSchema, TierSchema } from '../domain';

export const PruneInputSchema = z
  .object({
    database: NameSchema.default(DEFAULT_DATABASE),
    tier: TierSchema,
    /** For L1: only this node's backups; default: every node's, each on its own host. */
    node: NameSchema.optional(),
    /** Say what would be deleted; delete nothing. */
    dryRun: z.boolean().default(false),
  })
  .strict();

export type PruneInput = z.input<typeof PruneInputSchema>;
