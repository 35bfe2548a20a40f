/**
 * The manifest describes one backup and is its commit point (docs/architecture.md, rule 3): the artifact is
 * written first, the manifest last, and the catalog is the set of manifests.
 */
import { z } from 'zod';
import { TierSchema } from '../domain';
import { FINGERPRINT_VERSIONS } from '../duckdb/row-checksum';

export const MANIFEST_FORMAT = 1;

export const FingerprintSchema = z.object({
  rows: z.number().int().nonnegative(),
  minId: z.number().int().nullable(),
  maxId: z.number().int().nullable(),
  maxLsn: z.number().int().nullable(),
  checksum: z.string(),
  /**
   * Which definition checksum follows (docs/fingerprint.md). Manifests written before versions
   * were recorded have none: they are version 1, DuckDB's hash().
   */
  fingerprintVersion: z.literal(FINGERPRINT_VERSIONS).default(1),
});

export const ManifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
  backupId: z.string(),
  database: z.string(),
  tier: TierSchema,
  node: z.string(),
  /** The instant the backup started (workflow time), ISO-8601. */
  createdAt: z.string(),
  completedAt: z.string(),
  workflowId: z.string(),
  runId: z.string(),
  snapshot: FingerprintSchema.extend({
    lsn: z.number().int().nonnegative(),
    bytes: z.number().int().nonnegative(),
    stallMs: z.number().nonnegative(),
    /** The epoch of the history the snapshot's LSN belongs to (absent in older manifests). */
    epoch: z.number().int().positive().optional(),
  }),
  artifact: z.object({
    /** Key relative to the store's root (the S3 prefix or the L1 directory). */
    key: z.string(),
    compression: z.enum(['zstd', 'gzip']),
    level: z.number().int(),
    bytes: z.number().int().nonnegative(),
    sha256: z.string().regex(/^[a-f0-9]{64}$/),
    storageClass: z.string().optional(),
    /** Object Lock retention, when the bucket enforces it; nothing may delete it before. */
    retainUntil: z.string().optional(),
  }),
  /** When the snapshot was opened by DuckDB and matched the source fingerprint. */
  verifiedAt: z.string(),
  /** Set when a later check (download, restore test) found the artifact bad. */
  bad: z.object({ at: z.string(), reason: z.string() }).optional(),
});

export type Manifest = z.infer<typeof ManifestSchema>;
export type Fingerprint = z.infer<typeof FingerprintSchema>;

/** Parses a stored manifest; throws an Error naming the key and the bad fields. */
export function parseManifest(text: string, key: string): Manifest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`manifest ${key} is not JSON: ${(err as Error).message}`);
  }
  const parsed = ManifestSchema.safeParse(raw);
  if (!parsed.success) {
    const fields = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new Error(`manifest ${key} is malformed: ${fields}`);
  }
  return parsed.data;
}
