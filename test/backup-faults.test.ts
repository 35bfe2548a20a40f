/**
 * Faults a backup must survive without losing or duplicating anything: the worker killed in the
 * middle of an L2 upload, the S3 server down for 15 s, a stored artifact with flipped bytes.
 */
import assert from 'node:assert/strict';
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ListMultipartUploadsCommand, type S3Client } from '@aws-sdk/client-s3';
import type { TransferProgress } from '../src/activities';
import { KimiclawDr } from '../src/client';
import { s3ClientFor } from '../src/dev/servers';
import { BUCKET, Harness, eventually, runCli } from './harness';

let h: Harness;
let dr: KimiclawDr;
let s3: S3Client;

before(async () => {
  // ~60 MiB of events, uploaded at 4 MiB/s: a few seconds of upload to interrupt.
  h = await Harness.start({
    worker: false,
    seedBytes: 60 * 1024 * 1024,
    config: (base) => ({ ...base, storage: { ...base.storage, uploadLimitMiBps: 4 } }),
  });
  dr = new KimiclawDr(h.client, h.config);
  s3 = s3ClientFor(h.s3.endpoint, h.s3);
});

after(async () => {
  s3?.destroy();
  await h?.stop();
});

async function unfinishedUploads(): Promise<number> {
  const out = await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }));
  return out.Uploads?.length ?? 0;
}

/** Waits until the store step has sent at least `bytes` compressed bytes. */
async function uploadUnderway(workflowId: string, bytes: number): Promise<TransferProgress> {
  return eventually(
    async () => {
      const p = await dr.backupProgress(workflowId);
      if (p.transfer?.phase !== 'upload' || (p.transfer.bytesOut ?? 0) < bytes) return undefined;
      return (await unfinishedUploads()) >= 1 ? p.transfer : undefined;
    },
    'the upload to be under way',
    120_000,
    100,
  );
}

async function manifestsOf(backupId: string): Promise<string[]> {
  const files = await readdir(join(h.dir, 's3', BUCKET), { recursive: true });
  return files.filter((f) => f.includes(backupId) && f.endsWith('manifest.json'));
}

describe('faults during a backup', () => {
  test('worker SIGKILLed mid-upload: completes after restart, one manifest, no unfinished upload, verifies', async () => {
    const first = await h.spawnReadyWorker();
    const handle = await dr.startBackup({ tier: 'L2', reason: 'kill test' });
    const progress = await uploadUnderway(handle.workflowId, 6 * 1024 * 1024);
    assert.ok(progress.bytesDone < progress.bytesTotal, 'killed before the upload finished');
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));

    const second = await h.spawnReadyWorker();
    const result = await handle.result();
    assert.deepEqual(await manifestsOf(result.backupId), [`kimiclaw-dr/kimiclaw/L2/${result.backupId}/manifest.json`]);
    assert.equal(await unfinishedUploads(), 0, 'no unfinished multipart upload is left behind');
    const history = await handle.fetchHistory();
    const retried = history.events?.some((e) => (e.activityTaskStartedEventAttributes?.attempt ?? 1) > 1);
    assert.ok(retried, 'the store activity ran again after the kill');

    const verify = await runCli(['backups', 'verify', result.backupId], h.env());
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.match(verify.stdout, new RegExp(`OK +${result.backupId}`));
    second.kill('SIGTERM');
    await new Promise((r) => second.once('exit', r));
  });

  test('S3 server stopped for 15 s during the upload: the backup completes', async () => {
    await h.startWorker();
    const handle = await dr.startBackup({ tier: 'L2', reason: 'outage test' });
    await uploadUnderway(handle.workflowId, 6 * 1024 * 1024);
    await h.s3.stop();
    await new Promise((r) => setTimeout(r, 15_000));
    await h.s3.start();
    const result = await handle.result();
    assert.equal(result.tier, 'L2');
    assert.equal((await manifestsOf(result.backupId)).length, 1);
    const verify = await runCli(['backups', 'verify', result.backupId, '--json'], h.env());
    assert.equal(verify.code, 0, verify.stderr);
    assert.equal((JSON.parse(verify.stdout) as Array<{ ok: boolean }>)[0]?.ok, true);
  });

  test('a stored artifact with flipped bytes fails `backups verify`, naming the backup', async () => {
    const result = await (await dr.startBackup({ tier: 'L2', reason: 'bit rot test' })).result();
    const file = join(h.dir, 's3', BUCKET, 'kimiclaw-dr', 'kimiclaw', 'L2', result.backupId, 'kimiclaw.duckdb.zst');
    const handle = await open(file, 'r+');
    try {
      const middle = Math.floor(result.bytesAfter / 2);
      const buf = Buffer.alloc(16);
      await handle.read(buf, 0, 16, middle);
      for (let i = 0; i < buf.length; i++) buf[i] = buf[i]! ^ 0xff;
      await handle.write(buf, 0, 16, middle);
    } finally {
      await handle.close();
    }
    const verify = await runCli(['backups', 'verify', result.backupId], h.env());
    assert.equal(verify.code, 1);
    assert.match(verify.stdout, new RegExp(`FAILED ${result.backupId}`));
    assert.match(verify.stdout, /SHA-256 mismatch: manifest says [a-f0-9]{64}, stored artifact is [a-f0-9]{64}/);
  });
});
