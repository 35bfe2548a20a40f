/**
 * The copy to a standby region (docs/architecture.md, "Regions"): one pass lists the primary
 * region's store and the standby's, and applies planRegionCopy — new and changed objects copied
 * (data before the manifests that commit it), objects the primary no longer holds removed.
 * Objects stream from one store to the other; nothing is held in memory or on disk.
 */
import { Context } from '@temporalio/activity';
import type { StandbyRegionConfig } from '../config';
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

  async function copyToRegionPass(input: { region: string }): Promise<RegionCopyPass> {
    const ctx = Context.current();
    const { region, store: target } = standby(input.region);
    const source = stores.s3();
    const [from, to] = await Promise.all([source.list(''), target.list('')]);
    const plan = planRegionCopy(from, to, Date.now());
    metrics.regionCopyLag.set({ region: region.name }, plan.lagSeconds);
    let copiedBytes = 0;
    for (const [i, object] of plan.copy.entries()) {
      const { stream, bytes } = await source.openArtifact(object.key);
      await target.putArtifact(object.key, stream);
      copiedBytes += bytes;
      ctx.heartbeat({ copied: i + 1, of: plan.copy.length });
    }
    const kept: string[] = [];
    for (const key of plan.remove) {
      await target.deleteKeys([key]).catch((err: unknown) => kept.push(`${key}: ${(err as Error).message}`));
    }
    metrics.regionCopyLag.set({ region: region.name }, 0);
    metrics.regionCopyLastPass.set({ region: region.name }, Date.now() / 1000);
    return {
      region: region.name,
      copied: plan.copy.length,
      copiedBytes,
      removed: plan.remove.length - kept.length,
      same: plan.same,
      lagSeconds: plan.lagSeconds,
      kept,
      intervalMs: region.copyInterval,
    };
  }

  return { copyToRegionPass };
}
