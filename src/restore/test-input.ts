/** Input of the `restoreTest` workflow: which database, and which tier's newest backup to test. */
import { z } from 'zod';
import { DEFAULT_DATABASE, NameSchema } from '../domain';

export const RestoreTestInputSchema = z
  .object({
    database: NameSchema.default(DEFAULT_DATABASE),
    /** The tier whose newest verified backup is restored to scratch and checked. */
    tier: z.enum(['L1', 'L2', 'L3']).default('L2'),
  })
  .strict();

export type RestoreTestInput = z.input<typeof RestoreTestInputSchema>;
