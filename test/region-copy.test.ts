/**
 * The copy to a standby region on real servers: two S3-compatible servers (region a's, the
 * primary's, and region b's), a real backup and the log archive writing into region a's, and
 * `copyToRegion` keeping region b's a copy: every object with the same bytes, pruning carried over,
 * and region_copy_lag_seconds back to 0 once region b has everything.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KimiclawDr } from '../src/client';
import { createBucket, startVersitygw, type Versitygw } from '../src/dev/servers';
import { S3Store, createS3Client } from '../src/storage/s3';
import { regionCopyWorkflowId } from '../src/workflows/region';
import { Harness, waitFor } from './harness';

const CREDS = { accessKey: 'kimiclaw-region-b', secretKey: 'kimiclaw-region-b-secret' };
const BUCKET_B = 'kimiclaw-backups-b';

void describe('copy to a standby region (two S3 servers)', { timeout: 5 * 60_000 }, () => {
  let h: Harness;
  let dir: string;
  let s3b: Versitygw;
  let dr: KimiclawDr;
  let regionA: S3Store;
  let regionB: S3Store;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kimiclaw-region-b-'));
    s3b = await startVersitygw({ dir: join(dir, 's3'), ...CREDS });
    await createBucket(s3b.endpoint, CREDS, BUCKET_B);
    const storageB = {
      endpoint: s3b.endpoint,
      bucket: BUCKET_B,
      accessKeyId: CREDS.accessKey,
      secretAccessKey: CREDS.secretKey,
    };
    h = await Harness.start({
      config: (base) => ({
        ...base,
        regions: { primary: 'a', standby: [{ name: 'b', storage: storageB, copyInterval: '500ms' }] },
      }),
    });
    dr = new KimiclawDr(h.client, h.config);
    const b = h.config.regions!.standby[0]!.storage;
    regionB = new S3Store(createS3Client(b), b);
    regionA = new S3Store(createS3Client(h.config.storage), h.config.storage);
  });

  after(async () => {
    await h?.stop();
    await s3b?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const same = async () => {
    const [a, b] = await Promise.all([regionA.list(''), regionB.list('')]);
    const key = (o: { key: string; bytes: number; etag?: string }) => `${o.key} ${o.bytes} ${o.etag}`;
    return { a: a.map(key).sort(), b: b.map(key).sort() };
  };

  void test('backups and log segments reach region b as they are sealed; pruning follows', async () => {
    const first = await (await dr.startBackup({ tier: 'L2' })).result();
    await dr.ensureLogArchive('kimiclaw');
    const copy = await h.client.workflow.start('copyToRegion', {
      taskQueue: h.config.temporal.taskQueue,
      workflowId: regionCopyWorkflowId('b'),
      args: [{ region: 'b' }],
    });
    await waitFor('region b to hold the first backup', async () => {
      const { a, b } = await same();
      return b.some((k) => k.includes(`${first.backupId}/manifest.json`)) && a.length > 0;
    });
    const second = await (await dr.startBackup({ tier: 'L2' })).result();
    const synced = await waitFor('region b to hold what region a holds', async () => {
      const { a, b } = await same();
      return a.some((k) => k.includes(second.backupId)) && JSON.stringify(a) === JSON.stringify(b) && b;
    });
    assert.ok(synced.some((k) => k.includes(`${second.backupId}/manifest.json`)));

    // Pruned in region a (the artifact and manifest of the first backup): gone from region b too.
    const pruned = (await regionA.list('')).filter((o) => o.key.includes(first.backupId)).map((o) => o.key);
    assert.ok(pruned.length >= 2);
    await regionA.deleteKeys(pruned);
    await waitFor('the pruned backup gone from region b', async () => {
      const { a, b } = await same();
      return !b.some((k) => k.includes(first.backupId)) && JSON.stringify(a) === JSON.stringify(b);
    });
    const metrics = await h.worker!.metrics.registry.metrics();
    assert.match(metrics, /^region_copy_lag_seconds\{region="b"\} 0$/m);
    assert.match(metrics, /^region_copy_last_pass_timestamp\{region="b"\} \d/m);
    await copy.terminate('test over');
  });

  void test('an unknown region is refused, naming the standby regions', async () => {
    const bad = await h.client.workflow.start('copyToRegion', {
      taskQueue: h.config.temporal.taskQueue,
      workflowId: regionCopyWorkflowId('z'),
      args: [{ region: 'z' }],
    });
    await assert.rejects(bad.result(), (err: Error & { cause?: Error }) => {
      assert.match(String(err.cause?.message), /region: "z" is not a standby region \(standby regions: "b"\)/);
      return true;
    });
  });
});
