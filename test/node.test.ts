/**
 * The reference node, run as a real separate process (as the demo and the drills run it), and
 * the file verifier. Run: node --import tsx --test test/node.test.ts
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import {
  copyFile,
  mkdtemp,
  open,
  readFile,
  readdir,
  realpath,
  rm,
  stat,
  symlink,
  truncate,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DuckDBInstance } from '@duckdb/node-api';
import type { Fingerprint } from '../src/duckdb/fingerprint';
import { fingerprintFile } from '../src/duckdb/verify';
import { generateDatabase } from '../src/node/generate';
import { Gate, Mutex } from '../src/node/mutex';
import { startWriter } from '../src/node/writer';
import type { AppendResult } from '../src/node/store';

const REPO = resolve(__dirname, '..');
const MAIN = join(REPO, 'src/node/main.ts');
const START_TIMEOUT_MS = 30_000;

interface NodeProcess {
  url: string;
  child: ChildProcess;
  stderr(): string;
  /** Sends a signal and resolves with how the process ended. */
  kill(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running = new Set<NodeProcess>();

async function spawnNode(dataDir: string, id = 'node1'): Promise<NodeProcess> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      MAIN,
      '--id',
      id,
      '--data-dir',
      dataDir,
      '--port',
      '0',
      '--host',
      '127.0.0.1',
      '--database',
      'kimiclaw',
    ],
    { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once('exit', (code, signal) => r({ code, signal })),
  );
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`node did not start in time; stderr:\n${stderr}`)),
      START_TIMEOUT_MS,
    );
    createInterface({ input: child.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      const parsed = JSON.parse(line) as { event: string; url: string; id: string };
      assert.equal(parsed.event, 'listening');
      assert.equal(parsed.id, id);
      resolveUrl(parsed.url);
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`node exited (${code ?? signal}) before listening; stderr:\n${stderr}`));
    });
  });
  const node: NodeProcess = {
    url,
    child,
    stderr: () => stderr,
    async kill(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const result = await exited;
      running.delete(node);
      return result;
    },
  };
  running.add(node);
  return node;
}

after(async () => {
  await Promise.all([...running].map((n) => n.kill('SIGKILL')));
});

interface Reply<T = Record<string, unknown>> {
  status: number;
  body: T;
}

async function call<T = Record<string, unknown>>(
  url: string,
  method: 'GET' | 'POST',
  body?: unknown,
): Promise<Reply<T>> {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as T };
}

type Stats = Fingerprint & { lsn: number; asOfLsn: number; bytes: number; maxWriteStallMs: number };
type Snapshot = Fingerprint & { path: string; lsn: number; bytes: number; stallMs: number; durationMs: number };
type ErrorReply = { error: { code: string; message: string; field?: string; routes?: string[] } };

function fingerprintOf(value: Fingerprint): Fingerprint {
  const { rows, minId, maxId, maxLsn, checksum } = value;
  return { rows, minId, maxId, maxLsn, checksum };
}

const events = (n: number, kind = 'click'): Array<{ kind: string; payload: unknown }> =>
  Array.from({ length: n }, (_, i) => ({
    kind,
    payload: { user: `u${i}`, n: i, tags: ['a', 'b'], nested: { ok: true } },
  }));

async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `kimiclaw-${prefix}-`));
}

void describe('node API', () => {
  let dataDir: string;
  let node: NodeProcess;

  before(async () => {
    dataDir = await tempDir('node');
    node = await spawnNode(dataDir);
  });
  after(async () => {
    await node?.kill('SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  });

  void test('appends batches with increasing LSNs and ids, and reports them', async () => {
    const first = await call<AppendResult>(`${node.url}/events`, 'POST', { events: events(3) });
    assert.equal(first.status, 200);
    assert.deepEqual(first.body, { lsn: 1, firstId: 1, lastId: 3, count: 3 });
    const second = await call<AppendResult>(`${node.url}/events`, 'POST', {
      events: [{ kind: 'login', payload: null }],
    });
    assert.deepEqual(second.body, { lsn: 2, firstId: 4, lastId: 4, count: 1 });

    const health = await call(`${node.url}/health`, 'GET');
    assert.deepEqual(health.body, {
      status: 'ok',
      node: 'node1',
      database: 'kimiclaw',
      role: 'primary',
      epoch: 1,
      lsn: 2,
      rows: 4,
    });

    const stats = await call<Stats>(`${node.url}/stats`, 'GET');
    assert.equal(stats.status, 200);
    assert.equal(stats.body.lsn, 2);
    assert.equal(stats.body.rows, 4);
    assert.equal(stats.body.minId, 1);
    assert.equal(stats.body.maxId, 4);
    assert.equal(stats.body.maxLsn, 2);
    assert.match(stats.body.checksum, /^\d+$/);
    assert.ok(stats.body.bytes > 0);
    assert.equal(typeof stats.body.maxWriteStallMs, 'number');

    const asOfFirst = await call<Stats>(`${node.url}/stats?lsn=1`, 'GET');
    assert.equal(asOfFirst.body.asOfLsn, 1);
    assert.equal(asOfFirst.body.rows, 3);
    assert.equal(asOfFirst.body.maxId, 3);
    assert.notEqual(asOfFirst.body.checksum, stats.body.checksum);

    const ahead = await call<ErrorReply>(`${node.url}/stats?lsn=999`, 'GET');
    assert.equal(ahead.status, 409);
    assert.equal(ahead.body.error.field, 'lsn');
    const badLsn = await call<ErrorReply>(`${node.url}/stats?lsn=abc`, 'GET');
    assert.equal(badLsn.status, 400);
    assert.equal(badLsn.body.error.field, 'lsn');
  });

  void test('rejects invalid batches with 400 naming the field, and writes nothing', async () => {
    const before = (await call<Stats>(`${node.url}/stats`, 'GET')).body;
    const cases: Array<{ body: unknown; field: string | undefined; code: string; mentions: RegExp }> = [
      { body: {}, field: 'events', code: 'InvalidRequest', mentions: /1-10000 events/ },
      { body: { events: [] }, field: 'events', code: 'InvalidRequest', mentions: /1-10000 events/ },
      { body: { events: events(10_001) }, field: 'events', code: 'InvalidRequest', mentions: /1-10000 events/ },
      {
        body: { events: [{ kind: '', payload: 1 }] },
        field: 'events.0.kind',
        code: 'InvalidRequest',
        mentions: /1-64/,
      },
      {
        body: { events: [{ kind: 'x'.repeat(65), payload: 1 }] },
        field: 'events.0.kind',
        code: 'InvalidRequest',
        mentions: /1-64/,
      },
      {
        body: { events: [{ kind: 'a', payload: 1 }, { kind: 'b' }] },
        field: 'events.1.payload',
        code: 'InvalidRequest',
        mentions: /JSON/,
      },
      {
        body: { events: [{ kind: 'a', payload: 1, extra: 2 }] },
        field: 'events.0.extra',
        code: 'InvalidRequest',
        mentions: /extra/,
      },
      { body: '{"events": [', field: undefined, code: 'InvalidJson', mentions: /not valid JSON/ },
    ];
    for (const c of cases) {
      const reply = await call<ErrorReply>(`${node.url}/events`, 'POST', c.body);
      const label = JSON.stringify(c.body).slice(0, 80);
      assert.equal(reply.status, 400, label);
      assert.equal(reply.body.error.code, c.code, label);
      assert.equal(reply.body.error.field, c.field, label);
      assert.match(reply.body.error.message, c.mentions, label);
    }
    const afterwards = (await call<Stats>(`${node.url}/stats`, 'GET')).body;
    assert.equal(afterwards.lsn, before.lsn);
    assert.equal(afterwards.rows, before.rows);
  });

  void test('unknown routes answer 404 with the list of routes', async () => {
    const reply = await call<ErrorReply>(`${node.url}/nope`, 'GET');
    assert.equal(reply.status, 404);
    assert.equal(reply.body.error.code, 'NotFound');
    assert.ok(
      reply.body.error.routes?.includes(
        'POST /snapshot: write a consistent copy of the database to { path } inside the data directory',
      ),
    );
    const wrongMethod = await call<ErrorReply>(`${node.url}/events`, 'GET');
    assert.equal(wrongMethod.status, 405);
  });

  void test('a snapshot taken while a writer posts batches is consistent with what was acknowledged', async () => {
    const acks: AppendResult[] = [];
    const writer = startWriter({ url: node.url, eventsPerBatch: 50, intervalMs: 5, onAck: (a) => acks.push(a) });
    try {
      while (acks.length < 10) await sleep(10);
      const target = join(dataDir, 'snapshots', 'during-writes.duckdb');
      const snap = await call<Snapshot>(`${node.url}/snapshot`, 'POST', { path: target });
      assert.equal(snap.status, 200, JSON.stringify(snap.body));
      const acksAtSnapshot = acks.length;
      while (acks.length < acksAtSnapshot + 10) await sleep(10);
      const stats = await writer.stop();
      assert.equal(stats.errors, 0, stats.lastError);

      assert.equal(snap.body.path, join(await realpath(dataDir), 'snapshots', 'during-writes.duckdb'));
      assert.ok(snap.body.stallMs >= 0 && snap.body.stallMs <= snap.body.durationMs);
      assert.equal(snap.body.bytes, (await stat(target)).size);
      // Writes continued after the snapshot, so the snapshot really was taken mid-stream.
      assert.ok(acks.some((a) => a.lsn > snap.body.lsn));

      // Rows written by earlier tests, then every batch acknowledged up to the snapshot LSN.
      const earlier = acks[0]!.firstId - 1;
      const acked = acks.filter((a) => a.lsn <= snap.body.lsn).reduce((n, a) => n + a.count, 0);
      assert.equal(snap.body.rows, earlier + acked);
      assert.equal(snap.body.maxLsn, snap.body.lsn);

      const fromFile = await fingerprintFile(target);
      assert.deepEqual(fromFile, fingerprintOf(snap.body));
      const asOf = await call<Stats>(`${node.url}/stats?lsn=${snap.body.lsn}`, 'GET');
      assert.deepEqual(fingerprintOf(asOf.body), fromFile);

      const leftovers = (await readdir(dirname(target))).filter((f) => f.includes('.tmp-'));
      assert.deepEqual(leftovers, []);
      const live = await call<Stats>(`${node.url}/stats`, 'GET');
      assert.equal(typeof live.body.maxWriteStallMs, 'number');
    } finally {
      await writer.stop();
    }
  });

  void test('a repeated snapshot to the same path replaces the file', async () => {
    const target = join(dataDir, 'snapshots', 'again.duckdb');
    const first = await call<Snapshot>(`${node.url}/snapshot`, 'POST', { path: target });
    await call(`${node.url}/events`, 'POST', { events: events(2) });
    const second = await call<Snapshot>(`${node.url}/snapshot`, 'POST', { path: target });
    assert.equal(first.status, 200);
    assert.equal(second.status, 200);
    assert.equal(second.body.rows, first.body.rows + 2);
    assert.deepEqual(await fingerprintFile(target), fingerprintOf(second.body));
  });

  void test('snapshot paths outside the data directory or relative are refused and nothing is written', async () => {
    const realDataDir = await realpath(dataDir);
    const outsideDir = await tempDir('outside');
    try {
      await symlink(outsideDir, join(dataDir, 'escape-link'));
      const outsideFile = join(outsideDir, 'stolen.duckdb');
      const refused = [
        outsideFile,
        `${dataDir}/sub/../../${basename(outsideDir)}/stolen.duckdb`,
        join(dataDir, 'escape-link', 'stolen.duckdb'),
        join(dataDir, 'escape-link', 'deeper', 'stolen.duckdb'),
      ];
      for (const path of refused) {
        const reply = await call<ErrorReply>(`${node.url}/snapshot`, 'POST', { path });
        assert.equal(reply.status, 400, path);
        assert.equal(reply.body.error.code, 'InvalidPath', path);
        assert.equal(reply.body.error.field, 'path', path);
        assert.ok(reply.body.error.message.includes(path), `message names the path: ${reply.body.error.message}`);
        assert.ok(
          reply.body.error.message.includes(realDataDir),
          `message names the data dir: ${reply.body.error.message}`,
        );
      }
      assert.deepEqual(await readdir(outsideDir), []);
      assert.equal(existsSync(join(dataDir, 'sub')), false);

      const relative = await call<ErrorReply>(`${node.url}/snapshot`, 'POST', { path: 'snapshots/rel.duckdb' });
      assert.equal(relative.status, 400);
      assert.equal(relative.body.error.code, 'InvalidPath');
      assert.equal(relative.body.error.field, 'path');
      assert.match(relative.body.error.message, /relative/);
      assert.equal(existsSync(join(dataDir, 'snapshots', 'rel.duckdb')), false);

      const live = await call<ErrorReply>(`${node.url}/snapshot`, 'POST', { path: join(dataDir, 'kimiclaw.duckdb') });
      assert.equal(live.status, 400);
      assert.equal(live.body.error.code, 'InvalidPath');

      const notAString = await call<ErrorReply>(`${node.url}/snapshot`, 'POST', { path: 42 });
      assert.equal(notAString.status, 400);
      assert.equal(notAString.body.error.field, 'path');
    } finally {
      await rm(outsideDir, { recursive: true, force: true });
    }
  });
});

void describe('durability across process death', () => {
  let dataDir: string;
  before(async () => {
    dataDir = await tempDir('crash');
  });
  after(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  void test('SIGKILL loses no acknowledged event, and the restarted node continues the ids and LSNs', async () => {
    let node = await spawnNode(dataDir);
    let acked = 0;
    let last: AppendResult | undefined;
    for (let i = 0; i < 20; i++) {
      const reply = await call<AppendResult>(`${node.url}/events`, 'POST', { events: events(25) });
      assert.equal(reply.status, 200);
      acked += reply.body.count;
      last = reply.body;
    }
    const killed = await node.kill('SIGKILL');
    assert.equal(killed.signal, 'SIGKILL');

    node = await spawnNode(dataDir);
    const stats = await call<Stats>(`${node.url}/stats`, 'GET');
    assert.equal(stats.body.rows, acked);
    assert.equal(stats.body.lsn, last?.lsn);
    assert.equal(stats.body.maxId, last?.lastId);
    const next = await call<AppendResult>(`${node.url}/events`, 'POST', { events: events(1) });
    assert.deepEqual(next.body, {
      lsn: (last?.lsn ?? 0) + 1,
      firstId: (last?.lastId ?? 0) + 1,
      lastId: (last?.lastId ?? 0) + 1,
      count: 1,
    });
    await node.kill('SIGKILL');
  });

  void test('SIGKILL in the middle of a write stream keeps everything acknowledged up to the last ack', async () => {
    let node = await spawnNode(dataDir);
    const acks: AppendResult[] = [];
    const writer = startWriter({ url: node.url, eventsPerBatch: 40, intervalMs: 1, onAck: (a) => acks.push(a) });
    while (acks.length < 30) await sleep(5);
    await node.kill('SIGKILL');
    await writer.stop();
    const lastAck = acks[acks.length - 1]!;

    node = await spawnNode(dataDir);
    const atLastAck = await call<Stats>(`${node.url}/stats?lsn=${lastAck.lsn}`, 'GET');
    assert.equal(atLastAck.status, 200);
    assert.equal(atLastAck.body.maxId, lastAck.lastId);
    // Everything before this stream plus every acknowledged batch of it, nothing missing.
    const before = acks[0]!.firstId - 1;
    assert.equal(atLastAck.body.rows, before + acks.reduce((n, a) => n + a.count, 0));
    await node.kill('SIGKILL');
  });

  void test('SIGTERM finishes cleanly: exit code 0, WAL checkpointed away', async () => {
    const node = await spawnNode(dataDir);
    const reply = await call<AppendResult>(`${node.url}/events`, 'POST', { events: events(5) });
    assert.equal(reply.status, 200);
    const ended = await node.kill('SIGTERM');
    assert.equal(ended.code, 0, node.stderr());
    assert.equal(existsSync(join(dataDir, 'kimiclaw.duckdb.wal')), false);
    assert.match(node.stderr(), /"event":"stopped"/);
    const fp = await fingerprintFile(join(dataDir, 'kimiclaw.duckdb'));
    assert.equal(fp.maxId, reply.body.lastId);
  });
});

void describe('generated databases', () => {
  let dir: string;
  before(async () => {
    dir = await tempDir('gen');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  void test('generateDatabase builds about targetBytes and a node resumes after its last id and LSN', async () => {
    const path = join(dir, 'kimiclaw.duckdb');
    const result = await generateDatabase(path, { targetBytes: 4 * 1024 * 1024, rowsPerLsn: 500 });
    assert.ok(result.bytes >= 4 * 1024 * 1024 && result.bytes < 8 * 1024 * 1024, `bytes ${result.bytes}`);
    assert.equal(result.lsn, Math.ceil(result.rows / 500));
    await assert.rejects(generateDatabase(path, { targetBytes: 1024 }), /already exists/);

    const fp = await fingerprintFile(path);
    assert.deepEqual(
      { rows: fp.rows, minId: fp.minId, maxId: fp.maxId, maxLsn: fp.maxLsn },
      {
        rows: result.rows,
        minId: 1,
        maxId: result.lastId,
        maxLsn: result.lsn,
      },
    );

    const node = await spawnNode(dir, 'node2');
    try {
      const health = await call(`${node.url}/health`, 'GET');
      assert.equal(health.body.lsn, result.lsn);
      assert.equal(health.body.rows, result.rows);
      const next = await call<AppendResult>(`${node.url}/events`, 'POST', { events: events(2) });
      assert.deepEqual(next.body, {
        lsn: result.lsn + 1,
        firstId: result.lastId + 1,
        lastId: result.lastId + 2,
        count: 2,
      });
    } finally {
      await node.kill('SIGTERM');
    }
  });
});

void describe('snapshots next to long reads', () => {
  let dir: string;
  before(async () => {
    dir = await tempDir('reads');
    // Big enough that a fingerprint takes tens of milliseconds and overlaps the snapshot.
    await generateDatabase(join(dir, 'kimiclaw.duckdb'), { targetBytes: 48 * 1024 * 1024 });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  void test('a /stats read running while writes commit does not make the snapshot fail', async () => {
    const node = await spawnNode(dir, 'node3');
    const writer = startWriter({ url: node.url, eventsPerBatch: 20, intervalMs: 1 });
    try {
      for (let i = 0; i < 5; i++) {
        await sleep(50);
        const reads = [call(`${node.url}/stats`, 'GET'), sleep(15).then(() => call(`${node.url}/stats`, 'GET'))];
        await sleep(30);
        const snap = await call<Snapshot>(`${node.url}/snapshot`, 'POST', { path: join(dir, 'snaps', `s${i}.duckdb`) });
        assert.equal(snap.status, 200, JSON.stringify(snap.body));
        for (const read of await Promise.all(reads)) assert.equal(read.status, 200, JSON.stringify(read.body));
        assert.deepEqual(await fingerprintFile(snap.body.path), fingerprintOf(snap.body));
      }
      const stats = await writer.stop();
      assert.equal(stats.errors, 0, stats.lastError);
    } finally {
      await writer.stop();
      await node.kill('SIGTERM');
    }
  });
});

void describe('fingerprintFile', () => {
  let dir: string;
  let good: string;
  let goodFingerprint: Fingerprint;

  before(async () => {
    dir = await tempDir('verify');
    good = join(dir, 'good.duckdb');
    await generateDatabase(good, { targetBytes: 3 * 1024 * 1024 });
    goodFingerprint = await fingerprintFile(good);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const sha256 = async (path: string): Promise<string> =>
    createHash('sha256')
      .update(await readFile(path))
      .digest('hex');

  /** A damaged file must not pass as the original: it is refused or fingerprints differently. */
  async function assertDetected(path: string): Promise<void> {
    try {
      const fp = await fingerprintFile(path);
      assert.notDeepEqual(fp, goodFingerprint, 'a damaged file fingerprinted like the original');
    } catch (err) {
      assert.ok(err instanceof Error);
      assert.ok(err.message.includes(path), err.message);
    }
  }

  void test('reads a file without changing it or creating a WAL', async () => {
    const digest = await sha256(good);
    const fp = await fingerprintFile(good);
    assert.deepEqual(fp, goodFingerprint);
    assert.ok(fp.rows > 0);
    assert.equal(await sha256(good), digest);
    assert.equal(existsSync(`${good}.wal`), false);
  });

  void test('the fingerprint covers every column: changing one payload changes the checksum', async () => {
    const copy = join(dir, 'edited.duckdb');
    await copyFile(good, copy);
    const instance = await DuckDBInstance.create(copy);
    const connection = await instance.connect();
    await connection.run(`UPDATE events SET payload = payload || ' ' WHERE id = 1`);
    connection.closeSync();
    instance.closeSync();
    const fp = await fingerprintFile(copy);
    assert.equal(fp.rows, goodFingerprint.rows);
    assert.notEqual(fp.checksum, goodFingerprint.checksum);
  });

  void test('a file with bytes flipped in the middle is refused or fingerprints differently', async () => {
    const flipped = join(dir, 'flipped.duckdb');
    await copyFile(good, flipped);
    const size = (await stat(flipped)).size;
    const handle = await open(flipped, 'r+');
    try {
      const length = 4096;
      const buffer = Buffer.alloc(length);
      const position = Math.floor(size / 2);
      await handle.read(buffer, 0, length, position);
      for (let i = 0; i < length; i++) buffer[i] = (buffer[i] ?? 0) ^ 0xff;
      await handle.write(buffer, 0, length, position);
    } finally {
      await handle.close();
    }
    await assertDetected(flipped);
  });

  void test('a truncated file is refused or fingerprints differently', async () => {
    const truncated = join(dir, 'truncated.duckdb');
    await copyFile(good, truncated);
    await truncate(truncated, Math.floor((await stat(truncated)).size / 2));
    await assertDetected(truncated);
  });

  void test('a file that is not a DuckDB database is refused with a clear message', async () => {
    const junk = join(dir, 'junk.duckdb');
    await writeFile(junk, Buffer.alloc(256 * 1024, 'not a database '));
    await assert.rejects(fingerprintFile(junk), (err: Error) => {
      assert.ok(err.message.includes(junk), err.message);
      assert.match(err.message, /is not a readable DuckDB database/);
      return true;
    });
  });

  void test('a reader that runs past its timeout is killed and the call rejects', async () => {
    await assert.rejects(fingerprintFile(good, { timeoutMs: 1 }), /good\.duckdb timed out after 1 ms/);
  });

  void test('a DuckDB file without an events table, or no file at all, is refused', async () => {
    const other = join(dir, 'other.duckdb');
    const instance = await DuckDBInstance.create(other);
    const connection = await instance.connect();
    await connection.run('CREATE TABLE something_else (x INTEGER)');
    connection.closeSync();
    instance.closeSync();
    await assert.rejects(fingerprintFile(other), /without an events table \(tables: something_else\)/);
    await assert.rejects(fingerprintFile(join(dir, 'missing.duckdb')), /missing\.duckdb cannot be read: no such file/);
  });
});

void describe('write lock and read gate', () => {
  void test('the mutex grants the lock in arrival order, one holder at a time', async () => {
    const mutex = new Mutex();
    const order: number[] = [];
    let holders = 0;
    await Promise.all(
      [1, 2, 3, 4].map(async (n) => {
        const release = await mutex.acquire();
        holders++;
        assert.equal(holders, 1);
        await sleep(5 - n);
        order.push(n);
        holders--;
        release();
      }),
    );
    assert.deepEqual(order, [1, 2, 3, 4]);
  });

  void test('the gate holds passers until every holder has opened it', async () => {
    const gate = new Gate();
    const first = gate.shut();
    const second = gate.shut();
    let passed = false;
    const passing = gate.pass().then(() => (passed = true));
    first();
    first();
    await sleep(5);
    assert.equal(passed, false);
    second();
    await passing;
    assert.equal(passed, true);
  });
});
