/**
 * The fingerprint sidecar: `fingerprint.json` beside a backup's manifest. A manifest is written
 * once, and an archive-tier one is kept for years beside an artifact under Object Lock; what must
 * be said about a backup's fingerprint after it was written goes in this separate object, never
 * into the manifest. Today that is the known answer its version-1 checksum was computed under
 * (known-answer.ts). Without a sidecar, a version-1 backup's is DuckDB 1.5.6's, the only DuckDB
 * that ever wrote one here; a sidecar records another, e.g. for a backup imported from a
 * deployment that ran another DuckDB build.
 */
import { z } from 'zod';
import type { Tier } from '../domain';
import { KnownAnswerSchema, V1_KNOWN_ANSWER, type KnownAnswer } from '../duckdb/known-answer';
import type { BackupStore } from '../storage/store';
import { backupFolder } from './ids';
import type { Manifest } from './manifest';

export const FingerprintSidecarSchema = z.object({
  format: z.literal(1),
  /** hash() of a fixed row as computed by the DuckDB that made this backup's version-1 checksum. */
  v1KnownAnswer: KnownAnswerSchema,
});
export type FingerprintSidecar = z.infer<typeof FingerprintSidecarSchema>;

export function fingerprintSidecarKey(database: string, tier: Tier, backupId: string): string {
  return `${backupFolder(database, tier, backupId)}/fingerprint.json`;
}

/** Parses a stored sidecar; throws an Error naming where it is and what is wrong. */
export function parseFingerprintSidecar(text: string, location: string): FingerprintSidecar {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`fingerprint sidecar ${location} is not JSON: ${(err as Error).message}`);
  }
  const parsed = FingerprintSidecarSchema.safeParse(raw);
  if (!parsed.success) {
    const fields = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new Error(`fingerprint sidecar ${location} is malformed: ${fields}`);
  }
  return parsed.data;
}

/** The known answer a version-1 backup's checksum was computed under, and where it was found. */
export async function v1KnownAnswerOf(
  store: BackupStore,
  manifest: Manifest,
): Promise<{ knownAnswer: KnownAnswer; source: string }> {
  const key = fingerprintSidecarKey(manifest.database, manifest.tier, manifest.backupId);
  const text = await store.getText(key);
  if (text === undefined) return { knownAnswer: V1_KNOWN_ANSWER, source: 'built in (DuckDB 1.5.6)' };
  const location = store.locate(key);
  return { knownAnswer: parseFingerprintSidecar(text, location).v1KnownAnswer, source: location };
}
