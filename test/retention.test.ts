/**
 * Retention and Object Lock against a real S3-compatible server with an Object Lock bucket:
 * expired backups are pruned, the newest verified one never is, orphans are swept after their
 * grace period, the dry run deletes nothing, and L3 artifacts cannot be deleted while locked.
 */
import assert from 'node:assert/strict';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  DeleteObjectCommand,
  GetObjectRetentionCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { KimiclawDr } from '../src/client';
import { s3ClientFor } from '../src/dev/servers';
import { listCatalog } from '../src/catalog';
import type { ConfigInput } from '../src/config';
import { Stores } from '../src/storage/stores';
import { BUCKET, Harness, runCli } from './harness';

let h: Harness;
let dr: KimiclawDr;
let s3: S3Client;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  h = await Harness.start({
    objectLock: true,
    config: (base) => ({
      ...base,
      // L3 locked for an hour: the lock test's delete must meet the lock however slow the machine.
      backup: { retention: { L1: '1h', L2: '3s', L3: '1h' }, orphanGrace: '1s' },
    }),
  });
  dr = new KimiclawDr(h.client, h.config);
  s3 = s3ClientFor(h.s3.endpoint, h.s3);
});

after(async () => {
  s3?.destroy();
  await h?.stop();
});

async function catalogIds(tier: 'L2' | 'L3'): Promise<string[]> {
  const stores = new Stores(h.config);
  try {
    return (await listCatalog(h.config, stores, { tier })).backups.map((b) => b.backupId);
  } finally {
    stores.destroy();
  }
}

describe('retention', () => {
  test('an expired backup is pruned by the next backup; the newest is kept', async () => {
    const first = await (await dr.startBackup({ tier: 'L2' })).result();
    await sleep(3_500);
    const second = await (await dr.startBackup({ tier: 'L2' })).result();
    assert.ok(!('error' in second.pruned), JSON.stringify(second.pruned));
    assert.deepEqual(
      second.pruned.deleted.map((d) => d.backupId),
      [first.backupId],
    );
    assert.deepEqual(await catalogIds('L2'), [second.backupId]);
    // Gone for good: no version or delete marker of the pruned backup is left in the bucket.
    const left = await s3.send(
      new ListObjectVersionsCommand({ Bucket: BUCKET, Prefix: `kimiclaw-dr/kimiclaw/L2/${first.backupId}/` }),
    );
    assert.deepEqual([...(left.Versions ?? []), ...(left.DeleteMarkers ?? [])], []);
  });

  test('the newest verified backup survives even when expired; the dry run deletes nothing', async () => {
    await sleep(3_500);
    const [newest] = await catalogIds('L2');
    // An orphan: artifact bytes without a manifest (an upload that never committed).
    const orphanKey = 'kimiclaw-dr/kimiclaw/L2/kimiclaw-L2-20200101T000000Z-dead/kimiclaw.duckdb.zst';
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: orphanKey, Body: 'partial' }));
    await sleep(1_500);

    const dry = await runCli(['backups', 'prune', '--tier', 'L2', '--dry-run', '--json'], h.env());
    assert.equal(dry.code, 0, dry.stderr);
    const [planned, ...others] = JSON.parse(dry.stdout) as Array<{
      dryRun: boolean;
      deleted: unknown[];
      kept: Array<{ backupId: string; reason: string }>;
      orphansDeleted: string[];
    }>;
    assert.ok(planned && others.length === 0, 'L2 has one catalog: the bucket');
    assert.equal(planned.dryRun, true);
    assert.deepEqual(planned.deleted, []);
    assert.deepEqual(planned.kept, [{ backupId: newest, reason: 'newest-verified' }]);
    assert.deepEqual(planned.orphansDeleted, ['kimiclaw-L2-20200101T000000Z-dead']);
    await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: orphanKey })); // still there after the dry run

    const real = await runCli(['backups', 'prune', '--tier', 'L2', '--json'], h.env());
    assert.equal(real.code, 0, real.stderr);
    assert.deepEqual((JSON.parse(real.stdout) as Array<{ orphansDeleted: string[] }>)[0]?.orphansDeleted, [
      'kimiclaw-L2-20200101T000000Z-dead',
    ]);
    assert.deepEqual(await catalogIds('L2'), [newest]);
    const stores = new Stores(h.config);
    try {
      assert.equal(await stores.s3().statObject(orphanKey.replace('kimiclaw-dr/', '')), undefined);
    } finally {
      stores.destroy();
    }
  });

  test("the CLI prunes three expired L1 backups on the node's host; its dry run deletes none", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await (await dr.startBackup({ tier: 'L1' })).result()).backupId);
    // A worker (and a CLI config) that keeps L1 for one second: all but the newest have expired.
    const shortL1 = (base: ConfigInput): ConfigInput => ({
      ...base,
      backup: { ...base.backup, retention: { ...base.backup?.retention, L1: '1s' } },
    });
    const variant = await h.startVariant(shortL1);
    const configFile = join(h.dir, 'short-l1.json');
    const raw = shortL1(h.rawConfig);
    await writeFile(configFile, JSON.stringify({ ...raw, temporal: { ...raw.temporal, ...variant.config.temporal } }));
    const env = { ...h.env(), DR_CONFIG: configFile };
    await sleep(1_500);
    const l1Dir = join(h.nodes[0]!.dataDir, 'backups', 'kimiclaw', 'L1');

    const dry = await runCli(['backups', 'prune', '--tier', 'L1', '--dry-run', '--json'], env);
    assert.equal(dry.code, 0, dry.stderr);
    const [planned] = JSON.parse(dry.stdout) as Array<{ node: string; deleted: Array<{ backupId: string }> }>;
    assert.equal(planned?.node, 'node1');
    assert.deepEqual(planned.deleted.map((d) => d.backupId).sort(), ids.slice(0, 3).sort());
    assert.deepEqual((await readdir(l1Dir)).sort(), [...ids].sort(), 'the dry run deleted nothing');

    const real = await runCli(['backups', 'prune', '--tier', 'L1', '--json'], env);
    assert.equal(real.code, 0, real.stderr);
    const [pruned] = JSON.parse(real.stdout) as Array<{
      dryRun: boolean;
      deleted: Array<{ backupId: string }>;
      kept: Array<{ backupId: string; reason: string }>;
    }>;
    assert.equal(pruned?.dryRun, false);
    assert.deepEqual(pruned.deleted.map((d) => d.backupId).sort(), ids.slice(0, 3).sort());
    assert.deepEqual(pruned.kept, [{ backupId: ids[3], reason: 'newest-verified' }]);
    assert.deepEqual(await readdir(l1Dir), [ids[3]], "the three expired backups are gone from the node's disk");
  });

  test('a backup held by a running restore is not pruned, even when expired', async () => {
    const held = await (await dr.startBackup({ tier: 'L2' })).result();
    await s3.send(
      new PutObjectCommand({
        Bucket: BUCKET,
        Key: 'kimiclaw-dr/kimiclaw/leases/restore-test.json',
        Body: JSON.stringify({ backupIds: [held.backupId], expiresAt: new Date(Date.now() + 600_000).toISOString() }),
      }),
    );
    await sleep(3_500);
    const next = await (await dr.startBackup({ tier: 'L2' })).result();
    assert.ok(!('error' in next.pruned), JSON.stringify(next.pruned));
    assert.deepEqual(next.pruned.kept.find((k) => k.backupId === held.backupId)?.reason, 'in-use');
    assert.ok((await catalogIds('L2')).includes(held.backupId));
    await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'kimiclaw-dr/kimiclaw/leases/restore-test.json' }));
  });

  test('L3 artifacts carry Object Lock retention and cannot be deleted while locked', async () => {
    const result = await (await dr.startBackup({ tier: 'L3' })).result();
    const key = result.location.replace(`s3://${BUCKET}/`, '');
    const retention = await s3.send(new GetObjectRetentionCommand({ Bucket: BUCKET, Key: key }));
    assert.equal(retention.Retention?.Mode, 'COMPLIANCE');
    const until = retention.Retention?.RetainUntilDate?.getTime() ?? 0;
    assert.ok(until > Date.now(), 'locked into the future');
    const manifestText = await runCli(['backups', 'list', '--tier', 'L3', '--json'], h.env());
    const entry = (JSON.parse(manifestText.stdout) as { backups: Array<{ backupId: string; retainUntil?: string }> })
      .backups[0];
    assert.equal(entry?.backupId, result.backupId);
    assert.equal(Date.parse(entry.retainUntil ?? ''), until);
    // The bucket is versioned (Object Lock needs it): a plain delete only adds a delete marker;
    // deleting the locked version itself is what the lock refuses.
    const { VersionId } = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    assert.ok(VersionId, 'the locked object has a version id');
    await assert.rejects(
      s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key, VersionId })),
      /AccessDenied|locked|retention/i,
    );
  });

  test('L2 artifacts are not locked (only the archive tier is)', async () => {
    const result = await (await dr.startBackup({ tier: 'L2' })).result();
    const key = result.location.replace(`s3://${BUCKET}/`, '');
    const retention = await s3
      .send(new GetObjectRetentionCommand({ Bucket: BUCKET, Key: key }))
      .then((r) => r.Retention?.RetainUntilDate)
      .catch(() => undefined);
    assert.equal(retention, undefined);
  });
});
