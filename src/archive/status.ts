/**
 * How far the log archive of each database reaches, next to where its primary is. Each half is
 * asked on its own and bounded by its client's timeout: a store or a node that does not answer
 * is reported as such, with what was waited for, instead of hanging the whole answer.
 */
import type { Config } from '../config';
import { findPrimary } from '../cluster';
import { parseSegmentKey } from '../restore/segments';
import type { Stores } from '../storage/stores';

export interface ArchiveStatus {
  database: string;
  segments?: number;
  archivedThrough?: number;
  /** Why the archive could not be read (the store did not answer, refused …). */
  archiveError?: string;
  headLsn?: number;
  /** Why the primary's head is unknown. */
  headError?: string;
}

export async function archiveStatus(config: Config, stores: Stores): Promise<ArchiveStatus[]> {
  return Promise.all(
    config.databases.map(async (db): Promise<ArchiveStatus> => {
      const [archive, head] = await Promise.all([
        stores
          .s3()
          .list(`${db.name}/log/`)
          .then(
            (objects) => {
              const ends = objects.map((o) => parseSegmentKey(o.key)?.endLsn).filter((e) => e !== undefined);
              return { segments: ends.length, archivedThrough: Math.max(0, ...ends) };
            },
            (err: unknown) => ({ archiveError: (err as Error).message }),
          ),
        findPrimary(db).then(
          (p) => ({ headLsn: p.health.lsn }),
          (err: unknown) => ({ headError: (err as Error).message }),
        ),
      ]);
      return { database: db.name, ...archive, ...head };
    }),
  );
}
