/**
 * Whether this DuckDB's hash() is still the one version-1 checksums were computed with.
 *
 * A version-1 checksum is a sum of DuckDB's hash() over rows, and DuckDB changes hash() between
 * releases without notice (it did from 1.2.2 to 1.3.0). Recomputing an old checksum with a changed
 * hash() would call every old backup corrupt. So before a version-1 checksum is recomputed, hash()
 * of one fixed row is compared with the value recorded when those checksums were made: equal, the
 * recomputation means something; different, it cannot, and the caller verifies by other means and
 * says so. Every version-1 checksum this project wrote came from DuckDB 1.5.6 (the version pinned
 * since its first release), whose answer is V1_KNOWN_ANSWER.
 */
import { DuckDBInstance } from '@duckdb/node-api';
import { z } from 'zod';
import { SAFE_OPTIONS } from './open';
import { parseIsoMicros } from './replay';

export const KnownAnswerSchema = z.object({
  /** One events row, with ts as ISO-8601 UTC (up to 6 fractional digits). */
  row: z.object({
    id: z.number().int(),
    lsn: z.number().int(),
    ts: z.string(),
    kind: z.string(),
    payload: z.string(),
  }),
  /** hash() of that row as a decimal UBIGINT, as `duckdb` computed it. */
  hash: z.string().regex(/^\d+$/),
  /** The DuckDB version that computed it, as version() names it. */
  duckdb: z.string(),
});
export type KnownAnswer = z.infer<typeof KnownAnswerSchema>;

/** hash() of this row under DuckDB 1.5.6 (measured; the row's strings include multi-byte UTF-8). */
export const V1_KNOWN_ANSWER: KnownAnswer = {
  row: {
    id: 1,
    lsn: 1,
    ts: '2026-01-01T00:00:00.000001Z',
    kind: 'kimiclaw.known-answer',
    payload: '{"text":"é€😀","n":1}',
  },
  hash: '17742062842527547720',
  duckdb: 'v1.5.6',
};

/**
 * hash() of the row typed exactly as the events table types it (a struct's hash does not depend
 * on its field names, only on the values and their types). Parameters, not text: a known answer
 * may come from a stored object.
 */
const KNOWN_ANSWER_SQL = `SELECT hash(e)::VARCHAR, version() FROM (
  SELECT $1::BIGINT AS id, $2::BIGINT AS lsn, make_timestamp($3::BIGINT) AS ts, $4::VARCHAR AS kind, $5::VARCHAR AS payload
) AS e`;

/** What this process's DuckDB answers for the known-answer row. */
export async function computeKnownAnswer(row: KnownAnswer['row']): Promise<{ hash: string; duckdb: string }> {
  const instance = await DuckDBInstance.create(':memory:', { ...SAFE_OPTIONS });
  try {
    const connection = await instance.connect();
    try {
      const reader = await connection.runAndReadAll(KNOWN_ANSWER_SQL, [
        String(row.id),
        String(row.lsn),
        String(parseIsoMicros(row.ts)),
        row.kind,
        row.payload,
      ]);
      const [hash, duckdb] = reader.getRows()[0] ?? [];
      return { hash: String(hash), duckdb: String(duckdb) };
    } finally {
      connection.closeSync();
    }
  } finally {
    instance.closeSync();
  }
}

export type HashCheck = { same: true } | { same: false; reason: string };

/** Compares the recorded known answer with what this DuckDB computes; says why they differ. */
export function compareKnownAnswer(recorded: KnownAnswer, computed: { hash: string; duckdb: string }): HashCheck {
  if (recorded.hash === computed.hash) return { same: true };
  return {
    same: false,
    reason:
      `DuckDB ${computed.duckdb} computes hash() of the known-answer row as ${computed.hash}, where DuckDB ` +
      `${recorded.duckdb} computed ${recorded.hash}: hash() has changed, so a version-1 checksum cannot be recomputed`,
  };
}
