/**
 * Faults during a restore: the worker killed mid-download (the restore completes, the original
 * file untouched until the swap) and the backup object deleted half-way (the original stays in
 * place, the node keeps serving, the workflow fails with the reason).
 */
import assert from 'node:assert/strict';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { KimiclawDr } from '../src/client';
import { fingerprintFile } from '../src/duckdb/verify';
import { NodeClient } from '../src/node-client';
import type { restore } from '../src/workflows';
import { BUCKET, Harness, NODE_CREDENTIAL, eventually } from './harness';

let h: Harness;
let dr: KimiclawDr;
let node: NodeClient;

before(async () => {
  // ~60 MiB of events, downloaded at 4 MiB/s: seconds of download to interrupt.
  h = await Harness.start({
    worker: false,
    seedBytes: 60 * 1024 * 1024,
    config: (base) => ({ ...base, storage: { ...base.storage, downloadLimitMiBps: 4 } }),
  });
  dr = new KimiclawDr(h.client, h.config);
  node = new NodeClient('node1', h.nodes[0]!.url, NODE_CREDENTIAL);
});

after(async () => {
  await h?.stop();
});

async function downloading(workflowId: string): Promise<void> {
  await eventually(
    async () => {
      const d = await h.client.workflow.getHandle(workflowId).describe();
      const a = d.raw.pendingActivities?.find((p) => p.activityType?.name === 'stageBackup');
      const first = a?.heartbeatDetails?.payloads?.[0];
      if (!first) return undefined;
      const progress = h.client.options.loadedDataConverter.payloadConverter.fromPayload<{ bytesDone: number }>(first);
      return progress.bytesDone > 2 * 1024 * 1024 ? true : undefined;
    },
    'the download to be under way',
    120_000,
    100,
  );
}

describe('faults during a restore', () => {
  test('worker SIGKILLed mid-download: the restore completes; the original is untouched until the swap', async () => {
    const first = await h.spawnReadyWorker();
    await (await dr.startBackup({ tier: 'L2' })).result();
    const before = await node.stats();

    const handle = await h.client.workflow.start<typeof restore>('restore', {
      taskQueue: h.taskQueue,
      workflowId: `restore-kill-${Date.now()}`,
      args: [{ backupId: 'latest', toLsn: before.lsn }],
    });
    await downloading(handle.workflowId);
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    // While no worker runs, the live database is the node's own, serving as before.
    assert.equal((await node.stats()).checksum, before.checksum);
    assert.deepEqual(
      (await readdir(h.nodes[0]!.dataDir)).filter((f) => f.includes('.corrupted.')),
      [],
      'nothing moved aside before the swap',
    );

    const second = await h.spawnReadyWorker();
    const result = await handle.result();
    assert.equal(result.finalLsn, before.lsn);
    assert.equal((await node.stats()).checksum, before.checksum);
    assert.ok(result.movedAside);
    assert.equal((await fingerprintFile(result.movedAside)).checksum, before.checksum, 'the original file is intact');
    second.kill('SIGTERM');
    await new Promise((r) => second.once('exit', r));
  });

  test('backup object deleted half-way: the original stays, the node serves, the workflow says why', async () => {
    await h.startWorker();
    const backup = await (await dr.startBackup({ tier: 'L2' })).result();
    const before = await node.stats();
    const handle = await h.client.workflow.start<typeof restore>('restore', {
      taskQueue: h.taskQueue,
      workflowId: `restore-gone-${Date.now()}`,
      args: [{ backupId: backup.backupId }],
    });
    await downloading(handle.workflowId);
    // Cut the transfer (the server stops) and take the object away before it comes back.
    await h.s3.stop();
    await rm(join(h.dir, 's3', BUCKET, 'kimiclaw-dr', 'kimiclaw', 'L2', backup.backupId, 'kimiclaw.duckdb.zst'));
    await h.s3.start();

    const err = await handle.result().then(
      () => assert.fail('the restore should fail'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof WorkflowFailedError);
    assert.ok(err.cause instanceof ApplicationFailure);
    assert.match(
      err.cause.message,
      new RegExp(`restore from ${backup.backupId} failed while staging; the node's database was not touched`),
    );
    assert.match(err.cause.message, /NoSuchKey|does not exist|stopped after/);
    assert.equal((await node.health()).status, 'ok');
    assert.equal((await node.stats()).checksum, before.checksum, 'the original database is in place');
    const appended = await node.append([{ kind: 'still-serving', payload: {} }]);
    assert.equal(appended.lsn, before.lsn + 1);
  });
});
