/**
 * What a pass of the region copy does (pure; unit-tested): every object of the primary region's
 * store that the standby region's store lacks, or holds with another checksum, is copied — data
 * (artifacts, log segments) before the manifests that commit them, oldest first — and every object
 * the standby holds that the primary no longer does (pruned, retired) is removed, so the standby
 * carries what the catalog does. Objects the standby already has with the same checksum are not
 * sent again.
 */
import type { StoredObject } from '../storage/store';

export interface RegionCopyPlan {
  /** To copy, in order. */
  copy: StoredObject[];
  /** Keys to remove from the standby store. */
  remove: string[];
  /** Objects the standby already holds as they are. */
  same: number;
  /** Age, in seconds at `now`, of the oldest object the standby lacks (0: nothing lacking). */
  lagSeconds: number;
}

const isManifest = (key: string) => key.endsWith('manifest.json');

function sameObject(a: StoredObject, b: StoredObject): boolean {
  if (a.bytes !== b.bytes) return false;
  return a.etag === undefined || b.etag === undefined || a.etag === b.etag;
}

export function planRegionCopy(
  source: readonly StoredObject[],
  target: readonly StoredObject[],
  now: number,
): RegionCopyPlan {
  const held = new Map(target.map((o) => [o.key, o]));
  const sourceKeys = new Set(source.map((o) => o.key));
  const copy: StoredObject[] = [];
  let same = 0;
  for (const o of source) {
    const there = held.get(o.key);
    if (there && sameObject(o, there)) same++;
    else copy.push(o);
  }
  copy.sort(
    (a, b) =>
      Number(isManifest(a.key)) - Number(isManifest(b.key)) ||
      a.lastModified.getTime() - b.lastModified.getTime() ||
      a.key.localeCompare(b.key),
  );
  const oldest = Math.min(...copy.map((o) => o.lastModified.getTime()));
  return {
    copy,
    remove: target.filter((o) => !sourceKeys.has(o.key)).map((o) => o.key),
    same,
    lagSeconds: copy.length === 0 ? 0 : Math.max(0, (now - oldest) / 1000),
  };
}

/** One copy per standby region. */
export const regionCopyWorkflowId = (region: string) => `region-copy-${region}`;
