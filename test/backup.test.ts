/**
 * The backup workflow end to end against real servers: Temporal dev server, versitygw, a
 * kimiclaw node process with a steady writer, DuckDB files on disk.
 */
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { createHash } from 'node:crypto';
import { KimiclawDr } from '../src/client';
import { s3ClientFor } from '../src/dev/servers';
import { manifestKey } from '../src/backup/ids';
import { parseManifest } from '../src/backup/manifest';
import { fingerprintFile } from '../src/duckdb/verify';
import { startWriter } from '../src/node/writer';
import { DrBackupId, DrDatabase, DrOutcome, DrTier } from '../src/workflows/search-attributes';
import type { BackupResult } from '../src/workflows/backup';
import { AUTH, BUCKET, EVENTS_CREDENTIAL, Harness, runCli } from './harness';

let h: Harness;
let dr: KimiclawDr;
let s3: S3Client;

before(async () => {
  h = await Harness.start();
  dr = new KimiclawDr(h.client, h.config);
  s3 = s3ClientFor(h.s3.endpoint, h.s3);
});

after(async () => {
  s3?.destroy();
  await h?.stop();
});

async function sha256Of(key: string): Promise<string> {
  const out = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  const bytes = await out.Body!.transformToByteArray();
  return createHash('sha256').update(bytes).digest('hex');
}

async function failureOf(promise: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await promise.then(
    () => assert.fail('expected the workflow to fail'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof WorkflowFailedError, `expected WorkflowFailedError, got ${String(err)}`);
  assert.ok(err.cause instanceof ApplicationFailure, `expected ApplicationFailure cause, got ${String(err.cause)}`);
  return err.cause;
}

describe('backup workflow', () => {
  let l2: BackupResult;

  test('L2 backup while the node takes writes: verified, stored, manifest last, searchable', async () => {
    const writer = startWriter({ token: EVENTS_CREDENTIAL, url: h.nodes[0]!.url, eventsPerBatch: 50, intervalMs: 20 });
    await new Promise((r) => setTimeout(r, 1500));
    const handle = await dr.startBackup({ tier: 'L2', reason: 'test' });
    l2 = await handle.result();
    const written = await writer.stop();
    assert.equal(written.errors, 0, 'the writer saw errors during the backup');
    assert.ok(written.events > 0);

    assert.match(l2.backupId, /^kimiclaw-L2-\d{8}T\d{6}Z-[a-f0-9]{4}$/);
    assert.equal(l2.tier, 'L2');
    assert.ok(l2.rows > 0 && l2.rows <= written.events, `rows ${l2.rows} of ${written.events} written`);
    assert.ok(l2.bytesAfter > 0 && l2.bytesAfter < l2.bytesBefore, 'compressed artifact is smaller');
    assert.equal(l2.location, `s3://${BUCKET}/kimiclaw-dr/kimiclaw/L2/${l2.backupId}/kimiclaw.duckdb.zst`);

    const key = `kimiclaw-dr/${manifestKey('kimiclaw', 'L2', l2.backupId)}`;
    const manifestText = await (
      await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))
    ).Body!.transformToString();
    const manifest = parseManifest(manifestText, key);
    assert.equal(manifest.snapshot.rows, l2.rows);
    // New backups record the fingerprint version they were verified in (docs/fingerprint.md).
    assert.equal(manifest.snapshot.fingerprintVersion, 2);
    assert.equal(l2.fingerprintVersion, 2);
    assert.equal(manifest.snapshot.lsn, l2.lsn);
    assert.equal(manifest.artifact.sha256, l2.sha256);
    assert.equal(
      await sha256Of(`kimiclaw-dr/${manifest.artifact.key}`),
      l2.sha256,
      'stored bytes hash to the manifest',
    );
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `kimiclaw-dr/${manifest.artifact.key}` }));
    assert.equal(head.ContentLength, l2.bytesAfter);
    // Manifest last: it is never older than its artifact.
    const manifestHead = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    assert.ok(manifestHead.LastModified! >= head.LastModified!);

    const description = await handle.describe();
    const attrs = description.typedSearchAttributes;
    assert.equal(attrs.get(DrDatabase), 'kimiclaw');
    assert.equal(attrs.get(DrTier), 'L2');
    assert.equal(attrs.get(DrBackupId), l2.backupId);
    assert.equal(attrs.get(DrOutcome), 'success');

    // The snapshot file is removed once stored.
    await assert.rejects(stat(join(h.nodes[0]!.dataDir, 'snapshots', `${l2.backupId}.duckdb`)));
  });

  test('L1 backup lands in the node-local directory with its manifest', async () => {
    const result = await (await dr.startBackup({ tier: 'L1' })).result();
    const folder = join(h.nodes[0]!.dataDir, 'backups', 'kimiclaw', 'L1', result.backupId);
    const manifest = parseManifest(await readFile(join(folder, 'manifest.json'), 'utf8'), folder);
    assert.equal(manifest.tier, 'L1');
    assert.equal(manifest.artifact.sha256, result.sha256);
    const artifact = await readFile(join(folder, 'kimiclaw.duckdb.zst'));
    assert.equal(createHash('sha256').update(artifact).digest('hex'), result.sha256);
    assert.equal(result.location, join(folder, 'kimiclaw.duckdb.zst'));
  });

  test('L3 backup records its storage class', async () => {
    const result = await (await dr.startBackup({ tier: 'L3' })).result();
    const key = `kimiclaw-dr/${manifestKey('kimiclaw', 'L3', result.backupId)}`;
    const text = await (await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body!.transformToString();
    assert.equal(parseManifest(text, key).artifact.storageClass, h.config.storage.storageClass.L3);
  });

  test('the artifact restores to a database equal to the source at the snapshot LSN', async () => {
    const cli = await runCli(['backups', 'verify', l2.backupId, '--json'], h.env());
    assert.equal(cli.code, 0, cli.stderr);
    const [report] = JSON.parse(cli.stdout) as Array<{
      ok: boolean;
      rows: number;
      problems: string[];
      verification: unknown;
    }>;
    assert.ok(report);
    assert.deepEqual(report.problems, []);
    assert.equal(report.ok, true);
    assert.deepEqual(report.verification, { fingerprintVersion: 2, verifiedBy: 'checksum' });
    assert.equal(report.rows, l2.rows);
    // And independently: the live node's fingerprint up to that LSN equals the backup's.
    const stats = (await (await fetch(`${h.nodes[0]!.url}/stats?lsn=${l2.lsn}`, { headers: AUTH })).json()) as {
      rows: number;
      checksum: string;
    };
    assert.equal(stats.rows, l2.rows);
  });

  test('backups list shows every tier, newest first, as a table and as JSON', async () => {
    const json = await runCli(['backups', 'list', '--json'], h.env());
    assert.equal(json.code, 0, json.stderr);
    const catalog = JSON.parse(json.stdout) as {
      backups: Array<{ backupId: string; tier: string; createdAt: string }>;
    };
    assert.deepEqual(new Set(catalog.backups.map((b) => b.tier)), new Set(['L1', 'L2', 'L3']));
    const times = catalog.backups.map((b) => b.createdAt);
    assert.deepEqual(times, [...times].sort().reverse());
    const table = await runCli(['backups', 'list', '--tier', 'L2'], h.env());
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, new RegExp(l2.backupId));
    assert.doesNotMatch(table.stdout, /-L1-/);
  });

  test('/metrics reports the plan metrics by database and tier', async () => {
    const text = await (await fetch(h.worker!.metricsServer!.url)).text();
    for (const tier of ['L1', 'L2', 'L3']) {
      const ts = new RegExp(
        `^backup_last_success_timestamp\\{database="kimiclaw",tier="${tier}"\\} (\\d+(\\.\\d+)?)$`,
        'm',
      ).exec(text);
      assert.ok(ts, `backup_last_success_timestamp for ${tier} missing:\n${text.slice(0, 2000)}`);
      assert.ok(Math.abs(Number(ts[1]) - Date.now() / 1000) < 600);
      assert.match(text, new RegExp(`^backup_duration_seconds\\{database="kimiclaw",tier="${tier}"\\} \\d`, 'm'));
      assert.match(text, new RegExp(`^backup_size_bytes\\{database="kimiclaw",tier="${tier}"\\} [1-9]`, 'm'));
    }
  });

  test('a snapshot file that is verified matches the source fingerprint exactly', async () => {
    // Independent of the workflow: a fresh snapshot through the node API is consistent.
    const path = join(h.nodes[0]!.dataDir, 'snapshots', 'independent.duckdb');
    const res = await fetch(`${h.nodes[0]!.url}/snapshot`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...AUTH },
      body: JSON.stringify({ path }),
    });
    const snap = (await res.json()) as { rows: number; checksum: string; maxLsn: number };
    const fp = await fingerprintFile(path);
    assert.equal(fp.rows, snap.rows);
    assert.equal(fp.checksum, snap.checksum);
  });
});

describe('bad input fails at once with the field named, and writes nothing', () => {
  test('unknown tier', async () => {
    const handle = await h.client.workflow.start('backup', {
      taskQueue: h.taskQueue,
      workflowId: `bad-tier-${Date.now()}`,
      args: [{ tier: 'L4' }],
    });
    const failure = await failureOf(handle.result());
    assert.equal(failure.type, 'InvalidInput');
    assert.equal(failure.nonRetryable, true);
    assert.match(failure.message, /tier: "L4" is not accepted; accepted values: "L1", "L2", "L3"/);
  });

  test('unknown database', async () => {
    const handle = await h.client.workflow.start('backup', {
      taskQueue: h.taskQueue,
      workflowId: `bad-db-${Date.now()}`,
      args: [{ tier: 'L2', database: 'nope' }],
    });
    const failure = await failureOf(handle.result());
    assert.equal(failure.type, 'InvalidInput');
    assert.match(failure.message, /database: "nope" is not a configured database; configured: "kimiclaw"/);
  });

  test('the typed client refuses bad input before starting anything', async () => {
    await assert.rejects(dr.startBackup({ tier: 'L9' as 'L1' }), /tier: "L9" is not accepted/);
  });

  test('the CLI refuses an unknown tier with the accepted values', async () => {
    const cli = await runCli(['backup', '--tier', 'L7'], h.env());
    assert.notEqual(cli.code, 0);
    assert.match(cli.stderr, /L7.*Allowed choices are L1, L2, L3/s);
  });

  test('zero or negative retention is refused at start, naming the field', async () => {
    const cli = await runCli(['backups', 'list'], {
      ...h.env(),
      DR_CONFIG: await writeConfig({ backup: { retention: { L2: '0d', L1: '-1h' } } }),
    });
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /backup\.retention\.L1: "-1h" must be greater than zero/);
    assert.match(cli.stderr, /backup\.retention\.L2: "0d" must be greater than zero/);
  });
});

async function writeConfig(override: Record<string, unknown>): Promise<string> {
  const { writeFile } = await import('node:fs/promises');
  const base = JSON.parse(await readFile(h.configFile, 'utf8')) as Record<string, unknown>;
  const path = join(h.dir, `config-${Date.now()}.json`);
  await writeFile(path, JSON.stringify({ ...base, ...override }));
  return path;
}
