/**
 * The small vocabulary shared by configuration, workflow inputs and the catalog. Pure and free of
 * Node built-ins: workflow code imports it.
 */
import { z } from 'zod';

export const TIERS = ['L1', 'L2', 'L3'] as const;
export const TierSchema = z.enum(TIERS);
export type Tier = z.infer<typeof TierSchema>;

/** Names that end up in object keys, file names and workflow ids: keep them plain. */
export const NAME_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;
export const NameSchema = z
  .string()
  .regex(NAME_RE, 'must be 1-63 characters of a-z, 0-9, "-" or "_", starting with a letter or digit');

export const DEFAULT_DATABASE = 'kimiclaw';
export const DEFAULT_TASK_QUEUE = 'kimiclaw-dr';
