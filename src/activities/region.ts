/**
 * The copy to a standby region (docs/architecture.md, "Regions"): one pass lists the primary
 * region's store and the standby's, and applies planRegionCopy — new and changed objects copied
 * (data before the manifests that commit it), objects the primary no longer holds removed.
 * Objects stream from one store to the other; nothing is held in memory or on disk.
 */
import { Context } from '@temporalio/activity';
import { type StandbyRegionConfig, homeRegion } from '../config';
import { type ConfigCenter, openConfigCenter, readPrimary } from '../config-center';
import { regionElsewhere } from '../failover/placement';
import { primaryKey } from './cluster';
import { InputProblem } from '../errors';
import { planRegionCopy } from '../region/copy-plan';
import { S3Store, createS3Client } from '../storage/s3';
import type { ActivityDeps } from './index';

export interface RegionCopyPass {
  region: string;
  copied: number;
  copiedBytes: number;
  removed: number;
  same: number;
  /** The lag when the pass began, seconds. */
  lagSeconds: number;
  /** Removals the standby store refused (e.g. under Object Lock), with the reason. */
  kept: string[];
  /** How long to wait before the next pass (the region's copyInterval), ms. */
  intervalMs: number;
  /** Nothing was copied: the cluster is run from another region (the copy ends). */
  stoodDown?: string;
  /**
   * to: this region's store copied to the standby's (this region runs the cluster); from: the
   * standby's copied here (the standby region runs the cluster, so its store holds the new history).
   */
  direction?: 'to' | 'from';
}

export function createRegionActivities({ config, stores, metrics }: ActivityDeps) {
  const targets = new Map<string, S3Store>();

  function standby(region: string): { region: StandbyRegionConfig; store: S3Store } {
    const found = config.regions?.standby.find((r) => r.name === region);
    if (!found) {
      const known = config.regions?.standby.map((r) => `"${r.name}"`).join(', ') || 'none configured';
      throw new InputProblem('region', `"${region}" is not a standby region (standby regions: ${known})`);
    }
    let store = targets.get(region);
    if (!store) {
      store = new S3Store(createS3Client(found.storage), found.storage);
      targets.set(region, store);
    }
    return { region: found, store };
  }

  let center: ConfigCenter | undefined;
  const cc = () => (center ??= openConfigCenter(config.cluster.configCenter));

  /**
   * Where a region failover moved a cluster's primary, when it is outside this region: why, and
   * the region it is in now. That region's store is the one written since.
   */
  async function runElsewhere(): Promise<{ why: string; region: string | undefined } | undefined> {
    const home = homeRegion(config);
    if (home === undefined) return undefined;
    for (const db of config.databases.filter((d) => d.nodes.some((n) => n.region !== undefined))) {
      const { record } = await readPrimary(cc(), primaryKey(db.name));
      const why = record && regionElsewhere(home, db, record);
      if (why) return { why, region: db.nodes.find((n) => n.id === record.node)?.region };
    }
    return undefined;
  }

  /**
   * One pass of the copy between this region's store and a standby region's, in the direction
   * the primary's region says: to the standby while this region runs the cluster; from it while
   * the standby region runs the cluster (the home region keeps a copy of the new history, should
   * the standby region be lost in turn). Never the other way round (the copy carries removals,
   * and would undo what the running region wrote): when the primary is in a third region, or back
   * here after this copy pulled (`pulled`: failbackRegion pulls once more and restarts the copy
   * here), the pass copies nothing and the copy ends.
   */
  async function copyToRegionPass(input: { region: string; pulled?: boolean }): Promise<RegionCopyPass> {
    const { region, store: standbyStore } = standby(input.region);
    const elsewhere = await runElsewhere();
    const idle = { region: region.name, copied: 0, copiedBytes: 0, removed: 0, same: 0, lagSeconds: 0, kept: [] };
    if (elsewhere && elsewhere.region !== region.name) {
      return { ...idle, intervalMs: region.copyInterval, stoodDown: elsewhere.why };
    }
    if (!elsewhere && input.pulled) {
      return {
        ...idle,
        intervalMs: region.copyInterval,
        stoodDown: `the primary is back in this region after the copy from region ${region.name}: failbackRegion copies that store here once more, then restarts the copy to it`,
      };
    }
    const lag = (seconds: number) => metrics.regionCopyLag.set({ region: region.name }, seconds);
    const pass = elsewhere
      ? await copyPass(standbyStore, stores.s3(), lag)
      : await copyPass(stores.s3(), standbyStore, lag);
    metrics.regionCopyLag.set({ region: region.name }, 0);
    metrics.regionCopyLastPass.set({ region: region.name }, Date.now() / 1000);
    return { region: region.name, ...pass, intervalMs: region.copyInterval, direction: elsewhere ? 'from' : 'to' };
  }

  /**
   * One pass the other way: this region's store made a copy of `region`'s (removals included).
   * failbackRegion runs it before the home region archives again: while the standby region ran
   * the cluster its store received the new history (log segments, retirements, backups), and the
   * home store still holds the old one beyond the fork.
   */
  async function copyFromRegionPass(input: { region: string }): Promise<Omit<RegionCopyPass, 'intervalMs'>> {
    const { region, store: source } = standby(input.region);
    return { region: region.name, ...(await copyPass(source, stores.s3(), () => undefined)) };
  }

  async function copyPass(
    source: S3Store,
    target: S3Store,
    lag: (seconds: number) => void,
  ): Promise<Pick<RegionCopyPass, 'copied' | 'copiedBytes' | 'removed' | 'same' | 'lagSeconds' | 'kept'>> {
    const ctx = Context.current();
    const [from, to] = await Promise.all([source.list(''), target.list('')]);
    const plan = planRegionCopy(from, to, Date.now());
    lag(plan.lagSeconds);
    let copiedBytes = 0;
    for (const [i, object] of plan.copy.entries()) {
      const { stream, bytes } = await source.openArtifact(object.key);
      await target.putArtifact(object.key, stream);
      copiedBytes += bytes;
      ctx.heartbeat({ copied: i + 1, of: plan.copy.length });
    }
    const kept: string[] = [];
    for (const [i, key] of plan.remove.entries()) {
      // A copy that was ended (failbackRegion restarts it) stops removing at once.
      if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason;
      await target.deleteKeys([key]).catch((err: unknown) => kept.push(`${key}: ${(err as Error).message}`));
      ctx.heartbeat({ removed: i + 1, of: plan.remove.length });
    }
    return {
      copied: plan.copy.length,
      copiedBytes,
      removed: plan.remove.length - kept.length,
      same: plan.same,
      lagSeconds: plan.lagSeconds,
      kept,
    };
  }

  return { copyToRegionPass, copyFromRegionPass };
}
