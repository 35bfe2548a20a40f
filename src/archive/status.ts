/** How far the log archive of each database reaches, next to where its primary is. */
import type { Config } from '../config';
import { findPrimary } from '../cluster';
import { parseSegmentKey } from '../restore/segments';
import type { Stores } from '../storage/stores';

export interface ArchiveStatus {
  database: string;
  segments: number;
  archivedThrough: number;
  headLsn?: number;
}

export async function archiveStatus(config: Config, stores: Stores): Promise<ArchiveStatus[]> {
  const statuses: ArchiveStatus[] = [];
  for (const db of config.databases) {
    const segments = (await stores.s3().list(`${db.name}/log/`))
      .map((o) => parseSegmentKey(o.key))
      .filter((s) => s !== undefined);
    const headLsn = await findPrimary(db).then(
      (p) => p.health.lsn,
      () => undefined,
    );
    statuses.push({
      database: db.name,
      segments: segments.length,
      archivedThrough: Math.max(0, ...segments.map((s) => s.endLsn)),
      ...(headLsn === undefined ? {} : { headLsn }),
    });
  }
  return statuses;
}
