/**
 * The restore workflow against real servers: restore to everything archived and to an LSN,
 * fall back past a corrupted newest backup with zero acknowledged events lost, scratch restores,
 * and bad input refused before anything is touched.
 */
import assert from 'node:assert/strict';
import { open, readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { InvalidInputError, KimiclawDr } from '../src/client';
import { fingerprintFile } from '../src/duckdb/verify';
import { startWriter } from '../src/node/writer';
import { NodeClient } from '../src/node-client';
import type { RestoreInput } from '../src/restore/input';
import type { restore, restoreTest } from '../src/workflows';
import { BUCKET, EVENTS_CREDENTIAL, Harness, NODE_CREDENTIAL, eventually, runCli } from './harness';

let h: Harness;
let dr: KimiclawDr;
let node: NodeClient;

before(async () => {
  h = await Harness.start({ config: (base) => ({ ...base, archive: { interval: '1s', segmentMaxEvents: 2000 } }) });
  dr = new KimiclawDr(h.client, h.config);
  node = new NodeClient('node1', h.nodes[0]!.url, NODE_CREDENTIAL);
  await dr.ensureLogArchive('kimiclaw');
});

after(async () => {
  await h?.stop();
});

let seq = 0;
/** Through the typed client, as other services start a restore. */
function startRestore(input: RestoreInput) {
  return dr.startRestore(input, { workflowId: `restore-test-${Date.now()}-${seq++}` });
}

/** Straight to the workflow, as the Temporal UI would: the workflow itself must refuse bad input. */
function startRaw(input: RestoreInput) {
  return h.client.workflow.start<typeof restore>('restore', {
    taskQueue: h.taskQueue,
    workflowId: `restore-test-${Date.now()}-${seq++}`,
    args: [input],
  });
}

async function write(ms: number): Promise<number> {
  const writer = startWriter({ token: EVENTS_CREDENTIAL, url: h.nodes[0]!.url, eventsPerBatch: 10, intervalMs: 20 });
  await new Promise((r) => setTimeout(r, ms));
  const stats = await writer.stop();
  assert.equal(stats.errors, 0);
  return stats.lastLsn ?? 0;
}

async function archivedThrough(lsn: number): Promise<void> {
  await eventually(async () => {
    const status = await h.client.workflow.getHandle('archive-log-kimiclaw').describe();
    assert.equal(status.status.name, 'RUNNING');
    const objects = await readdir(join(h.dir, 's3', BUCKET, 'kimiclaw-dr', 'kimiclaw', 'log')).catch(() => []);
    const ends = objects.map((o) => Number(o.split('-')[1]?.split('.')[0] ?? 0));
    return Math.max(0, ...ends) >= lsn ? true : undefined;
  }, `the archive to reach LSN ${lsn}`);
}

async function failure(promise: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await promise.then(
    () => assert.fail('expected a failure'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof WorkflowFailedError);
  assert.ok(err.cause instanceof ApplicationFailure, String(err.cause));
  return err.cause;
}

describe('restore', () => {
  test('in place, everything archived: the node ends with every acknowledged event, original moved aside', async () => {
    await write(1000);
    await (await dr.startBackup({ tier: 'L2' })).result();
    const head = await write(1500);
    const before = await node.stats(head);
    await archivedThrough(head);

    const result = await (await startRestore({})).result();
    assert.equal(result.finalLsn, head);
    assert.equal(result.rows, before.rows);
    assert.ok(result.segmentsReplayed >= 1);
    assert.ok(result.rtoSeconds > 0);
    assert.ok(result.movedAside?.includes('.corrupted.'), result.movedAside);
    assert.ok((await stat(result.movedAside!)).size > 0, 'the original file is kept');
    const after = await node.stats(head);
    assert.equal(after.checksum, before.checksum);
    assert.equal((await node.health()).status, 'ok');
    const next = await node.append([{ kind: 'after-restore', payload: { ok: true } }]);
    assert.equal(next.lsn, head + 1, 'writes resume after the restored LSN');
  });

  test('to an LSN: later events are not restored', async () => {
    const target = (await node.health()).lsn;
    const want = await node.stats(target);
    const head = await write(800);
    await archivedThrough(head);
    const result = await (await startRestore({ toLsn: target })).result();
    assert.equal(result.finalLsn, target);
    const now = await node.stats();
    assert.equal(now.lsn, target);
    assert.equal(now.rows, want.rows);
    assert.equal(now.checksum, want.checksum);
  });

  test('a corrupted newest backup is marked bad; the previous one plus a longer replay loses nothing', async () => {
    await (await dr.startBackup({ tier: 'L2' })).result();
    await write(500);
    const newest = await (await dr.startBackup({ tier: 'L2' })).result();
    const head = await write(800);
    const before = await node.stats(head);
    await archivedThrough(head);
    const file = join(h.dir, 's3', BUCKET, 'kimiclaw-dr', 'kimiclaw', 'L2', newest.backupId, 'kimiclaw.duckdb.zst');
    const handle = await open(file, 'r+');
    await handle.write(Buffer.from('corruption!'), 0, 11, Math.floor(newest.bytesAfter / 2));
    await handle.close();

    const result = await (await startRestore({})).result();
    assert.deepEqual(
      result.fellBackFrom.map((f) => f.backupId),
      [newest.backupId],
    );
    assert.match(result.fellBackFrom[0]!.reason, /SHA-256|verification/);
    assert.notEqual(result.backupId, newest.backupId);
    assert.equal(result.finalLsn, head);
    assert.equal((await node.stats(head)).checksum, before.checksum, 'zero acknowledged events lost');
    const manifest = JSON.parse(
      await readFile(
        join(h.dir, 's3', BUCKET, 'kimiclaw-dr', 'kimiclaw', 'L2', newest.backupId, 'manifest.json'),
        'utf8',
      ),
    ) as { bad?: { reason: string } };
    assert.match(manifest.bad?.reason ?? '', /SHA-256|verification/, 'the catalog marks it bad');
  });

  test('the CLI previews a restore without touching anything, then runs one with --wait', async () => {
    const before = await node.stats();
    const preview = await runCli(['restore', '--preview', '--json'], h.env());
    assert.equal(preview.code, 0, preview.stderr);
    const { plan } = JSON.parse(preview.stdout) as {
      plan: { backup: { backupId: string }; targetLsn: number; reason: string };
    };
    assert.match(plan.backup.backupId, /^kimiclaw-L[123]-/);
    assert.ok(plan.targetLsn <= before.lsn);
    assert.equal((await node.stats()).checksum, before.checksum, 'preview changed nothing');
    const text = await runCli(['restore', '--preview'], h.env());
    assert.match(text.stdout, /nothing was changed \(--preview\)/);

    const run = await runCli(['restore', '--target', 'scratch', '--backup', 'latest', '--wait', '--json'], h.env());
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as { path: string; rows: number };
    assert.ok((await fingerprintFile(result.path)).rows === result.rows);
    const bad = await runCli(['restore', '--at', 'yesterday'], h.env());
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /pointInTime/);
  });

  test('scratch target: a verified copy beside the node, the node untouched', async () => {
    const before = await node.stats();
    const result = await (await startRestore({ target: 'scratch', backupId: 'latest' })).result();
    assert.ok(result.path);
    const fp = await fingerprintFile(result.path);
    assert.equal(fp.rows, result.rows);
    assert.equal((await node.stats()).checksum, before.checksum);
  });

  test('restoreTest: the newest L2 restores to scratch, matches its manifest, and is discarded', async () => {
    const newest = await (await dr.startBackup({ tier: 'L2' })).result();
    const result = await h.client.workflow.execute<typeof restoreTest>('restoreTest', {
      taskQueue: h.taskQueue,
      workflowId: `restore-test-l2-${Date.now()}`,
      args: [{ tier: 'L2' }],
    });
    assert.equal(result.backupId, newest.backupId);
    assert.equal(result.rows, newest.rows);
    assert.equal(result.lsn, newest.lsn);
    const scratch = await readdir(join(h.nodes[0]!.dataDir, 'restore-scratch')).catch(() => []);
    assert.equal(scratch.filter((d) => d.startsWith('restore-test-l2')).length, 0, 'the scratch copy is discarded');
    const metrics = await (await fetch(h.worker!.metricsServer!.url)).text();
    assert.match(metrics, /^restore_test_passed\{database="kimiclaw",tier="L2"\} 1$/m);
    assert.match(metrics, /^restore_test_last_run\{database="kimiclaw"\} \d{10}/m);
  });

  test('restoreTest of a corrupted backup fails loudly, with the reason and the metric', async () => {
    const l3 = await (await dr.startBackup({ tier: 'L3' })).result();
    const file = join(h.dir, 's3', BUCKET, 'kimiclaw-dr', 'kimiclaw', 'L3', l3.backupId, 'kimiclaw.duckdb.zst');
    const handle = await open(file, 'r+');
    await handle.write(Buffer.from('bit rot'), 0, 7, Math.floor(l3.bytesAfter / 2));
    await handle.close();
    const f = await failure(
      h.client.workflow.execute<typeof restoreTest>('restoreTest', {
        taskQueue: h.taskQueue,
        workflowId: `restore-test-l3-${Date.now()}`,
        args: [{ tier: 'L3' }],
      }),
    );
    assert.equal(f.type, 'RestoreTestFailed');
    assert.match(f.message, new RegExp(`restore test of ${l3.backupId} failed: .*(SHA-256|verification)`));
    const metrics = await (await fetch(h.worker!.metricsServer!.url)).text();
    assert.match(metrics, /^restore_test_passed\{database="kimiclaw",tier="L3"\} 0$/m);
  });

  test('bad input is refused before anything is moved, naming the field', async () => {
    const before = await node.stats();
    const cases: Array<[RestoreInput, RegExp]> = [
      [{ backupId: '../../etc/passwd' }, /backupId/],
      [{ backupId: 'kimiclaw-L2-20200101T000000Z-beef' }, /no backup kimiclaw-L2-20200101T000000Z-beef/],
      [{ backupId: 'other-L2-20200101T000000Z-beef' }, /backupId: belongs to database "other"/],
      [{ pointInTime: '2030-01-01T00:00:00Z' }, /pointInTime.*future/],
      [{ pointInTime: '2026-01-01T00:00:00Z', toLsn: 3 }, /give pointInTime or toLsn, not both/],
      [{ node: 'ghost' }, /"ghost" is not a node of database "kimiclaw"/],
      [{ target: 'scratch', scratchDir: 'relative/dir' }, /scratchDir/],
      [
        { target: 'scratch', scratchDir: '/etc/kimiclaw' },
        /scratchDir: \/etc\/kimiclaw is outside node node1's data directory/,
      ],
    ];
    for (const [input, message] of cases) {
      const f = await failure((await startRaw(input)).result());
      assert.equal(f.type, 'InvalidInput', `${JSON.stringify(input)}: ${f.message}`);
      assert.match(f.message, message);
    }
    // The typed client refuses what the schema refuses before anything starts.
    await assert.rejects(dr.startRestore({ backupId: '../../etc/passwd' }), InvalidInputError);
    assert.equal((await node.stats()).checksum, before.checksum);
    const files = await readdir(h.nodes[0]!.dataDir);
    const asides = files.filter((f) => /\.corrupted\.\d{8}T\d{6}Z$/.test(f));
    assert.equal(asides.length, 3, `only the three in-place restores moved a file aside: ${asides.join(', ')}`);
  });
});
