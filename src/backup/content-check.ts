/**
 * Proving a downloaded backup's content, once its artifact's SHA-256 matched the manifest and the
 * codec decompressed it (zstd checks its XXH64 content checksum, gzip its CRC-32, both while
 * decompressing): DuckDB opens the file and its fingerprint is compared with the manifest's, in
 * the manifest's fingerprint version.
 *
 * A version-1 checksum (DuckDB's hash()) is only recomputed when this DuckDB still gives the known
 * answer (known-answer.ts). When it does not, recomputing would call a good backup corrupt: the
 * checksum comparison is skipped, rows, ids and LSNs are still compared, and the result says so and
 * why. The content then rests on the SHA-256 and the codec's checksum, which prove the file is byte
 * for byte the snapshot that was verified against its source when the backup was taken.
 */
import {
  type Fingerprint,
  type FingerprintShape,
  fingerprintDifferences,
  shapeDifferences,
} from '../duckdb/fingerprint';
import { compareKnownAnswer, computeKnownAnswer, type KnownAnswer } from '../duckdb/known-answer';
import type { FingerprintVersion } from '../duckdb/row-checksum';
import { fingerprintFile, recordedFingerprintFile, shapeFile } from '../duckdb/verify';
import type { Compression } from './ids';

/**
 * What proved the content: `checksum`, every row hashed and the checksum compared;
 * `recorded-checksum`, the checksum the file recorded for itself compared (no row hashed; the
 * artifact's SHA-256 and codec prove the rows are the ones it was recorded for); `sha256+codec`,
 * no checksum compared (checksumSkipped says why).
 */
export type VerifiedBy = 'checksum' | 'recorded-checksum' | 'sha256+codec';

export interface ContentVerification {
  /** The fingerprint version compared: the manifest's. */
  fingerprintVersion: FingerprintVersion;
  verifiedBy: VerifiedBy;
  /** Why no checksum was compared, when verifiedBy is sha256+codec. */
  checksumSkipped?: string;
}

export interface ContentCheck {
  verification: ContentVerification;
  /** What the file holds: rows, ids and LSNs, with the checksum when one was compared. */
  found: FingerprintShape | Fingerprint;
  /** Differences from the manifest's fingerprint, as readable text; empty when it matches. */
  differences: string[];
}

export interface ContentCheckOptions {
  /** Hash every row, rather than compare the checksum the file recorded for itself. */
  fullScan: boolean;
  /**
   * The known answer a version-1 expected checksum was computed under, and where it came from;
   * asked only for a version-1 manifest.
   */
  v1KnownAnswer: () => Promise<{ knownAnswer: KnownAnswer; source: string }>;
}

/** Compares the decompressed backup at path with the manifest's fingerprint (see the top). */
export async function checkBackupContent(
  path: string,
  expected: Fingerprint,
  options: ContentCheckOptions,
): Promise<ContentCheck> {
  const version = expected.fingerprintVersion;
  if (!options.fullScan) {
    // Two stored numbers compared: no hash function is involved, whatever its version.
    const recorded = await recordedFingerprintFile(path);
    if (recorded?.fingerprintVersion === version) {
      return {
        verification: { fingerprintVersion: version, verifiedBy: 'recorded-checksum' },
        found: recorded,
        differences: fingerprintDifferences(expected, recorded),
      };
    }
  }
  if (version === 1) {
    const { knownAnswer, source } = await options.v1KnownAnswer();
    const check = compareKnownAnswer(knownAnswer, await computeKnownAnswer(knownAnswer.row));
    if (!check.same) {
      const shape = await shapeFile(path);
      return {
        verification: {
          fingerprintVersion: version,
          verifiedBy: 'sha256+codec',
          checksumSkipped: `${check.reason} (known answer: ${source})`,
        },
        found: shape,
        differences: shapeDifferences(expected, shape),
      };
    }
  }
  const actual = await fingerprintFile(path, { version });
  return {
    verification: { fingerprintVersion: version, verifiedBy: 'checksum' },
    found: actual,
    differences: fingerprintDifferences(expected, actual),
  };
}

const CODEC_CHECK: Record<Compression, string> = { zstd: "zstd's XXH64", gzip: "gzip's CRC-32" };

/** One line for reports and logs: which version was compared, and how (naming the codec's check when known). */
export function describeVerification(v: ContentVerification, compression?: Compression): string {
  switch (v.verifiedBy) {
    case 'checksum':
      return `fingerprint v${v.fingerprintVersion}, checksum recomputed over every row`;
    case 'recorded-checksum':
      return `fingerprint v${v.fingerprintVersion}, checksum as the file recorded it`;
    case 'sha256+codec':
      return (
        `fingerprint v${v.fingerprintVersion} checksum NOT compared: ${v.checksumSkipped ?? 'no reason given'}; ` +
        `verified by SHA-256, ${compression ? CODEC_CHECK[compression] : "the codec's checksum"} and rows, ids and LSNs alone`
      );
  }
}
