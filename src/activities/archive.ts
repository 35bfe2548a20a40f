/**
 * The continuous log archive: while a node is primary, its new events are sealed into segments
 * in the object store at least every `archive.interval` (10 s by default), so off-site data is
 * seconds old (docs/architecture.md: the archive, not daily L2, is what gives region RPO < 5 min and
 * corruption RPO 0). Segments are keyed by LSN range and the archive's position is read back from
 * the store at start, so restarts of the node or the worker leave no gap and no duplicate.
 */
import { Context, log } from '@temporalio/activity';
import type { Config } from '../config';
import { InputProblem } from '../errors';
import { findPrimary } from '../cluster';
import { encodeSegment } from '../archive/segment';
import type { DrMetrics } from '../metrics';
import { NodeClient } from '../node-client';
import { listManifests } from '../storage/store';
import type { Stores } from '../storage/stores';
import { TIERS } from '../domain';
import { epochEndAfter, epochOfLsn, parseSegmentKey, segmentKey } from '../restore/segments';

export interface ArchivePosition {
  database: string;
  /** Every LSN up to this one is sealed in the archive (or predates the archive's start). */
  archivedThrough: number;
  segments: number;
  /** The epoch of the node the pass read from. */
  epoch?: number;
}

export function createArchiveActivities(deps: { config: Config; stores: Stores; metrics: DrMetrics }) {
  const { config, stores, metrics } = deps;

  /**
   * Where the archive stands: the end of its newest segment. An empty archive starts at the
   * newest backup (older events are in that backup), or at 0 when there is none.
   */
  async function archivePosition(name: string): Promise<number> {
    const s3 = stores.s3();
    const ends = (await s3.list(`${name}/log/`))
      .map((o) => parseSegmentKey(o.key))
      .filter((s) => s !== undefined)
      .map((s) => s.endLsn);
    if (ends.length > 0) return Math.max(...ends);
    let newest = 0;
    for (const tier of TIERS) {
      if (tier === 'L1') continue;
      const { manifests } = await listManifests(s3, name, tier);
      for (const m of manifests) if (!m.bad) newest = Math.max(newest, m.snapshot.lsn);
    }
    return newest;
  }

  /**
   * One pass: seal everything the primary has committed after `from`. When the primary's epoch is
   * not the one the last pass saw, the position is read again from the store first: a restore that
   * opened a new history retired the archive after its fork, and the new history is sealed from
   * there (an ordinary failover finds the position where it was).
   */
  async function archivePass(
    name: string,
    from: number,
    lastEpoch?: number,
    orFenced = false,
  ): Promise<ArchivePosition> {
    const { node, health } = await findPrimary(stores.database(name), { orFenced });
    if (lastEpoch !== undefined && health.epoch !== lastEpoch) from = await archivePosition(name);
    const client = new NodeClient(node.id, node.url, config.nodeAuth.token);
    const s3 = stores.s3();
    let through = from;
    let segments = 0;
    let sampled = false;
    for (;;) {
      // One epoch per segment: a page stops where the next epoch of the primary's history begins.
      const epochEnd = epochEndAfter(health.history, through);
      const page = await client.events(through, config.archive.segmentMaxEvents, epochEnd);
      const first = page.events[0];
      // rpo_seconds is this event's age at each scrape until it is sealed, however long that takes.
      metrics.setOldestUnarchived(name, first ? Date.parse(first.ts) : null);
      if (!sampled) {
        // The exposure this pass closes: how old the oldest acknowledged unarchived event is.
        if (first)
          metrics.archiveLag.observe({ database: name }, Math.max(0, (Date.now() - Date.parse(first.ts)) / 1000));
        sampled = true;
      }
      if (!first) break;
      // The segment covers every LSN after the archive's position: LSNs with no event (batches a
      // surgical restore left out) are holes of the history, not gaps of the archive.
      const segment = await encodeSegment(page.events);
      const key = segmentKey(name, through + 1, page.lastLsn, epochOfLsn(health.history, page.lastLsn));
      await s3.putBytes(key, segment.body, {
        sha256: segment.sha256,
        rows: String(segment.rows),
        'first-ts': segment.firstTs,
        'last-ts': segment.lastTs,
      });
      through = page.lastLsn;
      segments++;
      metrics.archivedLsn.set({ database: name }, through);
      Context.current().heartbeat({ archivedThrough: through });
      if (!page.more && epochEnd !== undefined && through === epochEnd) continue;
      if (!page.more) {
        // Sealed up to the head this pass saw; anything newer is read by the next pass.
        metrics.setOldestUnarchived(name, null);
        break;
      }
    }
    return { database: name, archivedThrough: through, segments, epoch: health.epoch };
  }

  /**
   * Archives until cancelled or `runFor` elapsed (the workflow then continues as new). A pass
   * that fails (node down, store down) is retried next interval from the same position.
   */
  async function runLogArchiver(input: { database: string; runForMs: number }): Promise<ArchivePosition> {
    const ctx = Context.current();
    const name = input.database;
    let through = await archivePosition(name);
    let segments = 0;
    let epoch: number | undefined;
    const until = Date.now() + input.runForMs;
    while (Date.now() < until && !ctx.cancellationSignal.aborted) {
      const started = Date.now();
      try {
        const pass = await archivePass(name, through, epoch);
        through = pass.archivedThrough;
        segments += pass.segments;
        epoch = pass.epoch;
      } catch (err) {
        // The node is behind the archive: it was restored to an earlier LSN, and the restore
        // retires the abandoned part of the archive. Read the position again.
        if (err instanceof InputProblem && err.field === 'afterLsn')
          through = await archivePosition(name).catch(() => through);
        metrics.archiveFailures.inc({ database: name });
        log.warn('archive pass failed; retrying next interval', { database: name, error: (err as Error).message });
      }
      metrics.archivePasses.inc({ database: name });
      ctx.heartbeat({ archivedThrough: through });
      const wait = Math.max(0, config.archive.interval - (Date.now() - started));
      await ctx.sleep(wait).catch(() => undefined);
    }
    return { database: name, archivedThrough: through, segments };
  }

  /**
   * One pass run by a restore while it holds every node fenced (and before it changes any file):
   * seals what the node that was primary acknowledged last, reading from it although it is fenced.
   * The running archiver never reads from a fenced node: after the restore's swap the nodes' old
   * tails are an abandoned history. Returns how far the archive reaches.
   */
  async function sealAcknowledged(input: { database: string }): Promise<number> {
    const name = stores.database(input.database).name;
    const pass = await archivePass(name, await archivePosition(name), undefined, true);
    return pass.archivedThrough;
  }

  /** How far the archive reaches now (a restore waits for it to seal what was acknowledged). */
  async function archivedThrough(input: { database: string }): Promise<number> {
    return archivePosition(stores.database(input.database).name);
  }

  return { runLogArchiver, archivedThrough, sealAcknowledged };
}
