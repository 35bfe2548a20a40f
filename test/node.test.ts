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
  mkdir,
  mkdtemp,
  open,
  readFile,
  readdir,
  realpath,
  rename,
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
import { DatabaseStillOpenError, isOpenInProcess, openDatabase } from '../src/duckdb/open';
import { type LogEvent, applyEvents, formatIsoMicros, parseIsoMicros } from '../src/duckdb/replay';
import {
  ADD_TO_CHECKSUM_SQL,
  SET_STATE_SQL,
  STATE_CHECKSUM,
  STATE_FINGERPRINT_VERSION,
  ensureSchema,
} from '../src/duckdb/schema';
import { fingerprintFile, recordedFingerprintFile } from '../src/duckdb/verify';
import { generateDatabase } from '../src/node/generate';
import { Gate, Mutex } from '../src/node/mutex';
import { startWriter } from '../src/node/writer';
import { type AppendResult, EventStore } from '../src/node/store';
import { MaintenanceError } from '../src/node/store-errors';
import { AUTH, EVENTS_CREDENTIAL, NODE_TOKEN_ENV, teeToLog } from './credentials';

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
      '--init',
      'primary',
    ],
    { cwd: REPO, env: { ...process.env, ...NODE_TOKEN_ENV }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  teeToLog([child.stdout, child.stderr], `node-${id}`);
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
    headers: body === undefined ? AUTH : { 'content-type': 'application/json', ...AUTH },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as T };
}

type Stats = Fingerprint & { lsn: number; asOfLsn: number; bytes: number; maxWriteStallMs: number };
type Snapshot = Fingerprint & { path: string; lsn: number; bytes: number; stallMs: number; durationMs: number };
type ErrorReply = { error: { code: string; message: string; field?: string; routes?: string[] } };

function fingerprintOf(value: Fingerprint): Fingerprint {
  const { rows, minId, maxId, maxLsn, checksum, fingerprintVersion } = value;
  return { rows, minId, maxId, maxLsn, checksum, fingerprintVersion };
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

    const health = await call<{ disk: Record<string, unknown>; scrub: Record<string, unknown> }>(
      `${node.url}/health`,
      'GET',
    );
    const { disk, scrub, ...rest } = health.body;
    assert.deepEqual(rest, {
      status: 'ok',
      writable: true,
      node: 'node1',
      database: 'kimiclaw',
      role: 'primary',
      epoch: 1,
      history: [],
      lsn: 2,
      ackedLsn: 2,
      rows: 4,
      allowDegraded: false,
      syncState: 'standalone',
      auth: 'bearer',
      replicas: [],
    });
    assert.equal(disk.path, resolve(dataDir));
    assert.ok(Number(disk.freeBytes) > 0 && Number(disk.totalBytes) >= Number(disk.freeBytes), JSON.stringify(disk));
    assert.equal(typeof disk.low, 'boolean');
    assert.deepEqual(Object.keys(scrub).sort(), ['bytesChecked', 'lastDurationMs', 'lastRunAt', 'nextAt', 'ok']);

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
        'POST /snapshot (control credential): write a consistent copy of the database to { path } inside the data directory',
      ),
    );
    for (const path of ['/snapshot', '/maintenance']) {
      const wrongMethod = await call<ErrorReply>(`${node.url}${path}`, 'GET');
      assert.equal(wrongMethod.status, 405, path);
      assert.equal(wrongMethod.body.error.code, 'MethodNotAllowed', path);
    }
    assert.ok(reply.body.error.routes?.some((r) => r.startsWith('GET /events (events credential): ')));
    assert.ok(reply.body.error.routes?.some((r) => r.startsWith('POST /maintenance (control credential): ')));
  });

  void test('a snapshot taken while a writer posts batches is consistent with what was acknowledged', async () => {
    const acks: AppendResult[] = [];
    const writer = startWriter({
      token: EVENTS_CREDENTIAL,
      url: node.url,
      eventsPerBatch: 50,
      intervalMs: 5,
      onAck: (a) => acks.push(a),
    });
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
    const writer = startWriter({
      token: EVENTS_CREDENTIAL,
      url: node.url,
      eventsPerBatch: 40,
      intervalMs: 1,
      onAck: (a) => acks.push(a),
    });
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
    const writer = startWriter({ token: EVENTS_CREDENTIAL, url: node.url, eventsPerBatch: 20, intervalMs: 1 });
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

  void test('the recorded checksum equals a full scan; a file without one records none', async () => {
    assert.deepEqual(await recordedFingerprintFile(good), goodFingerprint);
    const bare = join(dir, 'bare.duckdb');
    const db = await openDatabase(bare);
    try {
      const c = await db.connect();
      await ensureSchema(c);
      c.closeSync();
    } finally {
      db.close();
    }
    assert.equal(await recordedFingerprintFile(bare), undefined);
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

interface Page {
  events: LogEvent[];
  fromLsn: number;
  lastLsn: number;
  headLsn: number;
  more: boolean;
}

async function page(url: string, query: string): Promise<Page> {
  const reply = await call<Page>(`${url}/events?${query}`, 'GET');
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  return reply.body;
}

/** Every page from afterLsn until `more` is false. */
async function allPages(url: string, afterLsn: number, limit: number, toLsn?: number): Promise<Page[]> {
  const pages: Page[] = [];
  let after = afterLsn;
  for (;;) {
    const p = await page(url, `afterLsn=${after}&limit=${limit}${toLsn === undefined ? '' : `&toLsn=${toLsn}`}`);
    pages.push(p);
    if (!p.more) return pages;
    assert.ok(p.lastLsn > after, `a page with more=true advances (${after} -> ${p.lastLsn})`);
    after = p.lastLsn;
  }
}

/** Rows per LSN. */
function batchSizes(list: LogEvent[]): Map<number, number> {
  const sizes = new Map<number, number>();
  for (const e of list) sizes.set(e.lsn, (sizes.get(e.lsn) ?? 0) + 1);
  return sizes;
}

/**
 * Appends rows a node never writes itself (microsecond and pre-1970 timestamps, control
 * characters, quotes, non-BMP text, a payload that is not even JSON) as one batch at the next LSN,
 * the way a bulk import would, and records the LSN in node_state.
 */
async function addAwkwardBatch(path: string): Promise<{ lsn: number; rows: number }> {
  const db = await openDatabase(path);
  try {
    const c = await db.connect();
    const [maxId, maxLsn] = ((await c.runAndReadAll('SELECT max(id), max(lsn) FROM events')).getRows()[0] ?? []).map(
      Number,
    );
    const id = (maxId ?? 0) + 1;
    const lsn = (maxLsn ?? 0) + 1;
    await c.run('BEGIN TRANSACTION');
    await c.run(
      `INSERT INTO events VALUES
        (${id}, ${lsn}, TIMESTAMP '2026-11-26 03:00:00.123456', 'click', '{"s":"quote \\" backslash \\\\ end"}'),
        (${id + 1}, ${lsn}, TIMESTAMP '1969-12-31 23:59:59.999999', 'tab' || chr(9) || 'kind', 'raw' || chr(10) || chr(1) || ' not json'),
        (${id + 2}, ${lsn}, TIMESTAMP '2000-02-29 12:34:56.000001', 'zażółć 🎉', '{"u":"zażółć 🎉 ' || chr(8232) || '"}'),
        (${id + 3}, ${lsn}, TIMESTAMP '2026-11-26 03:00:00', 'x', 'null')`,
    );
    await c.run(`UPDATE node_state SET value = '${lsn}' WHERE key = 'lsn'`);
    await c.run(ADD_TO_CHECKSUM_SQL, [String(lsn), String(lsn)]);
    await c.run('COMMIT');
    await c.run('CHECKPOINT');
    c.closeSync();
    return { lsn, rows: 4 };
  } finally {
    db.close();
  }
}

void describe('log paging (GET /events)', () => {
  let dir: string;
  let node: NodeProcess;
  /** Batch sizes as written: 4 awkward rows at `awkwardLsn`, then batches through the API. */
  let awkwardLsn: number;
  const apiBatches = [1, 5, 120, 3, 60, 1, 1, 45, 9, 30];

  before(async () => {
    dir = await tempDir('log');
    const path = join(dir, 'kimiclaw.duckdb');
    // Irregular batches from the generator: 37 rows per LSN.
    await generateDatabase(path, { targetBytes: 1024 * 1024, rowsPerLsn: 37 });
    awkwardLsn = (await addAwkwardBatch(path)).lsn;
    node = await spawnNode(dir, 'log1');
    for (const n of apiBatches) {
      const reply = await call<AppendResult>(`${node.url}/events`, 'POST', { events: events(n, `k${n}`) });
      assert.equal(reply.status, 200);
    }
  });
  after(async () => {
    await node?.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  void test('pages never split an LSN and cover every event exactly once, in (lsn, id) order', async () => {
    const stats = (await call<Stats>(`${node.url}/stats`, 'GET')).body;
    const whole = await page(node.url, 'afterLsn=0&limit=100000');
    assert.equal(whole.more, false);
    assert.equal(whole.events.length, stats.rows);
    assert.equal(whole.headLsn, stats.lsn);
    assert.equal(whole.lastLsn, stats.lsn);
    const sizes = batchSizes(whole.events);
    const largest = Math.max(...sizes.values());
    assert.equal(largest, 120);

    for (const limit of [1, 10, 37, 50, 119, 1000]) {
      const pages = await allPages(node.url, 0, limit);
      const seen = pages.flatMap((p) => p.events);
      assert.deepEqual(seen, whole.events, `limit ${limit}: the pages together are the whole log`);
      let previousLast = 0;
      for (const p of pages) {
        assert.equal(p.fromLsn, previousLast);
        const first = p.events[0];
        if (!first) {
          assert.equal(p.more, false);
          continue;
        }
        const last = p.events[p.events.length - 1]!;
        assert.equal(p.lastLsn, last.lsn);
        // Whole batches only: each LSN of the page has all its rows here.
        for (const [lsn, n] of batchSizes(p.events)) assert.equal(n, sizes.get(lsn), `limit ${limit}, lsn ${lsn}`);
        // Never more than needed: without its last batch the page would be short of limit...
        assert.ok(p.events.filter((e) => e.lsn < last.lsn).length < limit, `limit ${limit}: page not minimal`);
        // ...and it is short of limit only at the end of the log.
        if (p.more) assert.ok(p.events.length >= limit, `limit ${limit}: short page with more=true`);
        previousLast = p.lastLsn;
      }
      assert.equal(pages[pages.length - 1]!.more, false);
    }

    // A batch larger than limit comes whole, alone.
    const big = [...sizes].find(([, n]) => n === 120)![0];
    const alone = await page(node.url, `afterLsn=${big - 1}&limit=10`);
    assert.equal(alone.events.length, 120);
    assert.ok(alone.events.every((e) => e.lsn === big));
    assert.equal(alone.more, true);

    // Ids are 1..rows, each once.
    assert.deepEqual(
      whole.events.map((e) => e.id),
      Array.from({ length: stats.rows }, (_, i) => i + 1),
    );
  });

  void test('timestamps carry microseconds and strings come back exactly as stored', async () => {
    const p = await page(node.url, `afterLsn=${awkwardLsn - 1}&toLsn=${awkwardLsn}`);
    assert.deepEqual(
      p.events.map((e) => [e.ts, e.kind, e.payload]),
      [
        ['2026-11-26T03:00:00.123456Z', 'click', '{"s":"quote \\" backslash \\\\ end"}'],
        ['1969-12-31T23:59:59.999999Z', 'tab\tkind', 'raw\n\u0001 not json'],
        ['2000-02-29T12:34:56.000001Z', 'zażółć 🎉', '{"u":"zażółć 🎉 \u2028"}'],
        ['2026-11-26T03:00:00.000000Z', 'x', 'null'],
      ],
    );
    for (const e of p.events) assert.equal(formatIsoMicros(parseIsoMicros(e.ts)), e.ts);
    const fromApi = (await page(node.url, `afterLsn=${awkwardLsn}&limit=1`)).events[0]!;
    assert.equal(fromApi.payload, JSON.stringify(events(1, 'k1')[0]!.payload));
    assert.match(fromApi.ts, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/);
  });

  void test('toLsn bounds the pages; a bound beyond the head stops at the head', async () => {
    const head = (await call<Stats>(`${node.url}/stats`, 'GET')).body.lsn;
    const from = awkwardLsn - 3;
    const to = awkwardLsn + 4;
    const bounded = await allPages(node.url, from, 2, to);
    const list = bounded.flatMap((p) => p.events);
    assert.deepEqual(
      [...new Set(list.map((e) => e.lsn))],
      [from + 1, from + 2, from + 3, from + 4, from + 5, from + 6, to],
    );
    assert.equal(bounded[bounded.length - 1]!.lastLsn, to);
    assert.ok(bounded.slice(0, -1).every((p) => p.more));

    const oneShot = await page(node.url, `afterLsn=${from}&toLsn=${to}&limit=100000`);
    assert.deepEqual(oneShot.events, list);
    assert.equal(oneShot.more, false);

    const empty = await page(node.url, `afterLsn=${to}&toLsn=${to}`);
    assert.deepEqual(empty, { events: [], fromLsn: to, lastLsn: to, headLsn: head, more: false });
    const atHead = await page(node.url, `afterLsn=${head}`);
    assert.deepEqual(atHead, { events: [], fromLsn: head, lastLsn: head, headLsn: head, more: false });
    const beyond = await page(node.url, `afterLsn=${head - 1}&toLsn=${head + 1000}`);
    assert.equal(beyond.lastLsn, head);
    assert.equal(beyond.more, false);
  });

  void test('bad parameters answer 400 naming the field and the accepted range; an LSN ahead answers 409', async () => {
    const head = (await call<Stats>(`${node.url}/stats`, 'GET')).body.lsn;
    const cases: Array<[string, string, RegExp]> = [
      ['', 'afterLsn', /required.*0-999999999999999/],
      ['limit=5', 'afterLsn', /required/],
      ['afterLsn=-1', 'afterLsn', /0-999999999999999/],
      ['afterLsn=abc', 'afterLsn', /0-999999999999999/],
      ['afterLsn=1.5', 'afterLsn', /0-999999999999999/],
      ['afterLsn=1234567890123456', 'afterLsn', /0-999999999999999/],
      ['afterLsn=0&limit=0', 'limit', /1-100000/],
      ['afterLsn=0&limit=100001', 'limit', /1-100000/],
      ['afterLsn=0&limit=ten', 'limit', /1-100000/],
      ['afterLsn=5&toLsn=4', 'toLsn', /5-999999999999999/],
      ['afterLsn=5&toLsn=x', 'toLsn', /0-999999999999999/],
      ['afterLsn=5&from=1', 'from', /accepted: afterLsn, limit, toLsn/],
    ];
    for (const [query, field, mentions] of cases) {
      const reply = await call<ErrorReply>(`${node.url}/events?${query}`, 'GET');
      assert.equal(reply.status, 400, query);
      assert.equal(reply.body.error.code, 'InvalidRequest', query);
      assert.equal(reply.body.error.field, field, query);
      assert.match(reply.body.error.message, mentions, query);
    }
    const ahead = await call<ErrorReply>(`${node.url}/events?afterLsn=${head + 1}`, 'GET');
    assert.equal(ahead.status, 409);
    assert.equal(ahead.body.error.code, 'LsnAhead');
    assert.equal(ahead.body.error.field, 'afterLsn');
    assert.match(ahead.body.error.message, new RegExp(`afterLsn ${head + 1} is ahead of this node's lsn ${head}`));
  });

  void test('the log copied through /events into a fresh file with applyEvents has the same fingerprint', async () => {
    const target = join(dir, 'copy', 'kimiclaw.duckdb');
    await mkdir(dirname(target));
    const db = await openDatabase(target);
    let applied = 0;
    try {
      const c = await db.connect();
      await ensureSchema(c);
      // A file that records its checksum keeps it up to date batch by batch.
      await c.run(SET_STATE_SQL, [STATE_CHECKSUM, '0']);
      await c.run(SET_STATE_SQL, [STATE_FINGERPRINT_VERSION, '2']);
      for (const p of await allPages(node.url, 0, 500)) {
        const result = await applyEvents(c, p.events);
        applied += result.count;
        if (p.events.length > 0) assert.equal(result.lsn, p.lastLsn);
      }
      // The same page again would duplicate rows: refused, and nothing is written.
      const again = await page(node.url, 'afterLsn=0&limit=10');
      await assert.rejects(applyEvents(c, again.events), /not above the LSN this database has reached/);
      const state = (await c.runAndReadAll(`SELECT value FROM node_state WHERE key = 'lsn'`)).getRows();
      const stats = (await call<Stats>(`${node.url}/stats`, 'GET')).body;
      assert.deepEqual(state, [[String(stats.lsn)]]);
      c.closeSync();
    } finally {
      db.close();
    }
    const source = (await call<Stats>(`${node.url}/stats`, 'GET')).body;
    assert.equal(applied, source.rows);
    assert.deepEqual(await fingerprintFile(target), fingerprintOf(source));
    assert.deepEqual(await recordedFingerprintFile(target), fingerprintOf(source));

    // And the copy is a database a node can run on: it resumes after the copied LSN and id.
    const copyNode = await spawnNode(dirname(target), 'log-copy');
    try {
      const next = await call<AppendResult>(`${copyNode.url}/events`, 'POST', { events: events(1) });
      assert.deepEqual(next.body, {
        lsn: source.lsn + 1,
        firstId: source.maxId! + 1,
        lastId: source.maxId! + 1,
        count: 1,
      });
    } finally {
      await copyNode.kill('SIGKILL');
    }
  });

  void test('applyEvents refuses bad input before writing anything', async () => {
    const target = join(dir, 'copy2', 'bad.duckdb');
    await mkdir(dirname(target));
    const db = await openDatabase(target);
    try {
      const c = await db.connect();
      await ensureSchema(c);
      const good: LogEvent = { id: 1, lsn: 1, ts: '2026-11-26T03:00:00.123456Z', kind: 'k', payload: '{}' };
      const cases: Array<[LogEvent[], RegExp]> = [
        [[{ ...good, ts: '2026-11-26 03:00:00' }], /events\[0\]\.ts: .* is not an ISO timestamp/],
        [[{ ...good, ts: '2026-02-30T00:00:00Z' }], /events\[0\]\.ts: .* is not a valid date/],
        [[{ ...good, lsn: 0 }], /events\[0\]\.lsn/],
        [[good, { ...good }], /events\[1\]: \(lsn 1, id 1\) does not follow/],
        [
          [
            { ...good, lsn: 2 },
            { ...good, id: 2 },
          ],
          /events\[1\].*strictly increasing/,
        ],
        [[{ ...good, payload: {} as unknown as string }], /events\[0\]\.payload/],
      ];
      for (const [list, message] of cases) await assert.rejects(applyEvents(c, list), message);
      assert.deepEqual((await c.runAndReadAll('SELECT count(*)::INTEGER FROM events')).getRows(), [[0]]);
      assert.deepEqual(await applyEvents(c, []), { count: 0, firstLsn: null, lastLsn: null, lsn: 0 });
      assert.deepEqual(await applyEvents(c, [good, { ...good, id: 2, lsn: 3 }]), {
        count: 2,
        firstLsn: 1,
        lastLsn: 3,
        lsn: 3,
      });
      c.closeSync();
    } finally {
      db.close();
    }
  });

  void test('pages read while a writer posts contain only whole committed batches', async () => {
    const start = (await call<Stats>(`${node.url}/stats`, 'GET')).body.lsn;
    const acks: AppendResult[] = [];
    const writer = startWriter({
      token: EVENTS_CREDENTIAL,
      url: node.url,
      eventsPerBatch: 7,
      intervalMs: 2,
      onAck: (a) => acks.push(a),
    });
    const seen: LogEvent[] = [];
    let after = start;
    try {
      while (acks.length < 40) {
        const p = await page(node.url, `afterLsn=${after}&limit=5`);
        seen.push(...p.events);
        after = p.lastLsn;
      }
    } finally {
      const stats = await writer.stop();
      assert.equal(stats.errors, 0, stats.lastError);
    }
    for (;;) {
      const p = await page(node.url, `afterLsn=${after}&limit=5`);
      seen.push(...p.events);
      after = p.lastLsn;
      if (!p.more) break;
    }
    const sizes = batchSizes(seen);
    assert.deepEqual(
      [...sizes],
      acks.map((a) => [a.lsn, a.count]),
    );
  });
});

void describe('maintenance mode', () => {
  let dir: string;
  let node: NodeProcess;
  let dbPath: string;

  const enable = (reason?: string): Promise<Reply> =>
    call(`${node.url}/maintenance`, 'POST', reason === undefined ? { enabled: true } : { enabled: true, reason });
  const disable = (extra: Record<string, unknown> = {}): Promise<Reply> =>
    call(`${node.url}/maintenance`, 'POST', { enabled: false, ...extra });

  /** Puts src at dest the way a restore does: temp copy, fsync, rename. */
  async function place(src: string, dest: string): Promise<void> {
    const tmp = `${dest}.restore-tmp`;
    await copyFile(src, tmp);
    const handle = await open(tmp, 'r+');
    await handle.sync();
    await handle.close();
    await rename(tmp, dest);
  }

  before(async () => {
    dir = await tempDir('maint');
    dbPath = join(await realpath(dir), 'kimiclaw.duckdb');
    node = await spawnNode(dir, 'maint1');
  });
  after(async () => {
    await node?.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  void test('writes are refused while on; a different file put in place is reopened and the LSN continues from it', async () => {
    for (let i = 0; i < 5; i++) await call(`${node.url}/events`, 'POST', { events: events(10) });
    const earlier = (
      await call<Snapshot>(`${node.url}/snapshot`, 'POST', { path: join(dir, 'snaps', 'earlier.duckdb') })
    ).body;
    for (let i = 0; i < 3; i++) await call(`${node.url}/events`, 'POST', { events: events(4) });
    const live = (await call<Stats>(`${node.url}/stats`, 'GET')).body;
    assert.ok(live.lsn > earlier.lsn);

    const on = await enable('restore r-1');
    assert.equal(on.status, 200, JSON.stringify(on.body));
    assert.deepEqual(
      { ...on.body, since: undefined },
      {
        status: 'maintenance',
        reason: 'restore r-1',
        since: undefined,
        lsn: live.lsn,
        path: dbPath,
      },
    );
    const again = await enable();
    assert.equal(again.status, 200);
    assert.equal(again.body.status, 'maintenance');
    assert.equal(again.body.reason, 'restore r-1');

    // Closed for real: another process can open the file, and it holds every row (no WAL left).
    assert.equal(existsSync(`${dbPath}.wal`), false);
    assert.deepEqual(await fingerprintFile(dbPath), fingerprintOf(live));

    const write = await call<ErrorReply & { error: { reason?: string } }>(`${node.url}/events`, 'POST', {
      events: events(1),
    });
    assert.equal(write.status, 503);
    assert.equal(write.body.error.code, 'Maintenance');
    assert.equal(write.body.error.reason, 'restore r-1');
    assert.match(write.body.error.message, /maint1 is in maintenance .*restore r-1/);
    for (const [path, method, body] of [
      ['/stats', 'GET', undefined],
      ['/events?afterLsn=0', 'GET', undefined],
      ['/snapshot', 'POST', { path: join(dir, 'snaps', 'during.duckdb') }],
    ] as const) {
      const reply = await call<ErrorReply>(`${node.url}${path}`, method, body);
      assert.equal(reply.status, 503, path);
      assert.equal(reply.body.error.code, 'Maintenance', path);
    }
    assert.equal(existsSync(join(dir, 'snaps', 'during.duckdb')), false);
    const health = await call(`${node.url}/health`, 'GET');
    assert.equal(health.status, 200);
    assert.equal(health.body.status, 'maintenance');
    assert.equal(health.body.reason, 'restore r-1');
    assert.equal(health.body.lsn, live.lsn);

    // The restore: current file aside (kept), the earlier snapshot in its place.
    await rename(dbPath, `${dbPath}.corrupted.test`);
    await place(earlier.path, dbPath);

    const off = await disable();
    assert.equal(off.status, 200, JSON.stringify(off.body));
    const { fingerprint: opened, ...offRest } = off.body as { fingerprint: unknown };
    assert.deepEqual(offRest, { status: 'ok', lsn: earlier.lsn, rows: earlier.rows, path: dbPath, created: false });
    assert.deepEqual(opened, fingerprintOf(earlier), 'the node reports the fingerprint of the file it opened');
    const stats = (await call<Stats>(`${node.url}/stats`, 'GET')).body;
    assert.deepEqual(fingerprintOf(stats), fingerprintOf(earlier));
    assert.equal(stats.lsn, earlier.lsn);
    assert.equal((await call(`${node.url}/health`, 'GET')).body.status, 'ok');

    const next = await call<AppendResult>(`${node.url}/events`, 'POST', { events: events(2) });
    assert.deepEqual(next.body, {
      lsn: earlier.lsn + 1,
      firstId: earlier.maxId! + 1,
      lastId: earlier.maxId! + 2,
      count: 2,
    });
    const page = await call<Page>(`${node.url}/events?afterLsn=${earlier.lsn}`, 'GET');
    assert.deepEqual(
      page.body.events.map((e) => e.id),
      [earlier.maxId! + 1, earlier.maxId! + 2],
    );
    const twice = await disable();
    const { fingerprint: _again, ...twiceRest } = twice.body as { fingerprint: unknown };
    assert.deepEqual(twiceRest, {
      status: 'ok',
      lsn: earlier.lsn + 1,
      rows: earlier.rows + 2,
      path: dbPath,
      created: false,
    });
    // The file moved aside is untouched: it still has everything the node had before.
    assert.deepEqual(await fingerprintFile(`${dbPath}.corrupted.test`), fingerprintOf(live));
  });

  void test('writes queued when maintenance begins commit first; none is acknowledged after its LSN', async () => {
    const before = (await call<Stats>(`${node.url}/stats`, 'GET')).body;
    const writes = Array.from({ length: 40 }, () =>
      call<AppendResult & ErrorReply>(`${node.url}/events`, 'POST', { events: events(3) }),
    );
    // Ask once the first has committed: the others have reached the lock by then, or nearly.
    while (((await call(`${node.url}/health`, 'GET')).body.lsn as number) === before.lsn) await sleep(1);
    const on = await enable('queue test');
    const replies = await Promise.all(writes);
    assert.equal(on.status, 200);
    const acked = replies.filter((r) => r.status === 200).map((r) => r.body);
    const refused = replies.filter((r) => r.status !== 200);
    assert.ok(
      refused.every((r) => r.status === 503 && r.body.error.code === 'Maintenance'),
      JSON.stringify(refused),
    );
    assert.ok(acked.every((a) => a.lsn <= (on.body.lsn as number)));
    assert.equal(on.body.lsn, before.lsn + acked.length);

    const off = await disable();
    assert.equal(off.status, 200);
    assert.equal(off.body.rows, before.rows + 3 * acked.length);
  });

  void test('reopening with the file missing answers 409 DatabaseMissing and stays in maintenance, unless allowEmpty', async () => {
    const before = (await call<Stats>(`${node.url}/stats`, 'GET')).body;
    assert.equal((await enable('empty test')).status, 200);
    await rename(dbPath, `${dbPath}.aside`);

    const missing = await disable();
    assert.equal(missing.status, 409);
    const error = (missing.body as ErrorReply).error;
    assert.equal(error.code, 'DatabaseMissing');
    assert.ok(error.message.includes(dbPath), error.message);
    assert.match(error.message, /allowEmpty/);
    assert.equal((await call(`${node.url}/health`, 'GET')).body.status, 'maintenance');
    assert.equal(existsSync(dbPath), false);

    const refusedFlag = await call<ErrorReply>(`${node.url}/maintenance`, 'POST', { enabled: true, allowEmpty: true });
    assert.equal(refusedFlag.status, 400);
    assert.equal(refusedFlag.body.error.field, 'allowEmpty');

    const empty = await disable({ allowEmpty: true });
    assert.equal(empty.status, 200, JSON.stringify(empty.body));
    const { fingerprint: emptyFingerprint, ...emptyRest } = empty.body as { fingerprint: { rows: number } };
    assert.deepEqual(emptyRest, { status: 'ok', lsn: 0, rows: 0, path: dbPath, created: true });
    assert.equal(emptyFingerprint.rows, 0);
    const first = await call<AppendResult>(`${node.url}/events`, 'POST', { events: events(1) });
    assert.deepEqual(first.body, { lsn: 1, firstId: 1, lastId: 1, count: 1 });

    // Back to the real data for the next tests.
    assert.equal((await enable()).status, 200);
    await rename(`${dbPath}.aside`, dbPath);
    assert.equal((await disable()).status, 200);
    assert.deepEqual(fingerprintOf((await call<Stats>(`${node.url}/stats`, 'GET')).body), fingerprintOf(before));
  });

  void test('a WAL that is not the one the node left is refused (409 StaleWal) until it is moved aside', async () => {
    const before = (await call<Stats>(`${node.url}/stats`, 'GET')).body;
    assert.equal((await enable('wal test')).status, 200);
    await writeFile(`${dbPath}.wal`, Buffer.alloc(4096, 7));
    const stale = await disable();
    assert.equal(stale.status, 409);
    assert.equal((stale.body as ErrorReply).error.code, 'StaleWal');
    assert.ok((stale.body as ErrorReply).error.message.includes(`${dbPath}.wal`));
    await rename(`${dbPath}.wal`, `${dbPath}.wal.aside`);
    assert.equal((await disable()).status, 200);
    assert.deepEqual(fingerprintOf((await call<Stats>(`${node.url}/stats`, 'GET')).body), fingerprintOf(before));
  });

  void test('bad maintenance bodies answer 400 naming the field', async () => {
    const cases: Array<[unknown, string]> = [
      [{}, 'enabled'],
      [{ enabled: 'yes' }, 'enabled'],
      [{ enabled: true, reason: '' }, 'reason'],
      [{ enabled: true, reason: 'x'.repeat(501) }, 'reason'],
      [{ enabled: false, allowEmpty: 'yes' }, 'allowEmpty'],
      [{ enabled: true, force: true }, 'force'],
    ];
    for (const [body, field] of cases) {
      const reply = await call<ErrorReply>(`${node.url}/maintenance`, 'POST', body);
      assert.equal(reply.status, 400, JSON.stringify(body));
      assert.equal(reply.body.error.field, field, JSON.stringify(body));
    }
    assert.equal((await call(`${node.url}/health`, 'GET')).body.status, 'ok');
  });

  void test('killed while in maintenance, the node restarts healthy with all its data', async () => {
    const before = (await call<Stats>(`${node.url}/stats`, 'GET')).body;
    assert.equal((await enable('crash test')).status, 200);
    await node.kill('SIGKILL');
    node = await spawnNode(dir, 'maint1');
    const health = await call(`${node.url}/health`, 'GET');
    assert.equal(health.body.status, 'ok');
    assert.equal(health.body.lsn, before.lsn);
    const stats = (await call<Stats>(`${node.url}/stats`, 'GET')).body;
    assert.deepEqual(fingerprintOf(stats), fingerprintOf(before));
    const next = await call<AppendResult>(`${node.url}/events`, 'POST', { events: events(1) });
    assert.equal(next.body.lsn, before.lsn + 1);

    // And a clean stop while in maintenance exits 0.
    assert.equal((await enable('stop test')).status, 200);
    const ended = await node.kill('SIGTERM');
    assert.equal(ended.code, 0, node.stderr());
  });
});

void describe('EventStore close and reopen, in process', () => {
  let dir: string;
  before(async () => {
    dir = await tempDir('store');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  void test('appends queued before maintenance commit, later ones and reads are refused, reopen resumes', async () => {
    const path = join(dir, 'queue', 'kimiclaw.duckdb');
    const store = await EventStore.open(path);
    try {
      const queued = [store.append(events(2)), store.append(events(3)), store.append(events(4))];
      const entering = store.enterMaintenance('unit test');
      await sleep(0);
      assert.equal(store.maintenance?.reason, 'unit test');
      await assert.rejects(store.append(events(1)), MaintenanceError);
      const on = await entering;
      assert.deepEqual(
        (await Promise.all(queued)).map((a) => a.lsn),
        [1, 2, 3],
      );
      assert.equal(on.lsn, 3);
      assert.equal(on.reason, 'unit test');
      assert.equal(isOpenInProcess(path), false);
      await assert.rejects(store.stats(), MaintenanceError);
      await assert.rejects(store.events(0, 10), MaintenanceError);
      await assert.rejects(store.snapshot(join(dir, 'queue', 'snap.duckdb')), MaintenanceError);
      assert.deepEqual((await fingerprintFile(path)).rows, 9);

      const off = await store.exitMaintenance();
      const { fingerprint: opened, ...offRest } = off;
      assert.deepEqual(offRest, { status: 'ok', lsn: 3, rows: 9, path: store.path, created: false });
      assert.equal(opened.rows, 9);
      assert.equal(isOpenInProcess(path), true);
      await assert.rejects(openDatabase(path), /already open in this process/);
      assert.equal((await store.append(events(1))).lsn, 4);
    } finally {
      await store.close();
    }
    assert.equal(isOpenInProcess(path), false);
    const again = await EventStore.open(path);
    try {
      assert.equal(again.lsn, 4);
      assert.equal(again.rows, 10);
    } finally {
      await again.close();
    }
  });

  void test('closing a database that a forgotten connection keeps open is refused, and it cannot be reopened', async () => {
    const path = join(dir, 'leak.duckdb');
    const db = await openDatabase(path);
    const tracked = await db.connect();
    await tracked.run('CREATE TABLE t (x INTEGER)');
    // Made behind openDatabase's back: it keeps the database (and its file) alive after close.
    const untracked = await db.instance.connect();
    assert.throws(() => db.close(), DatabaseStillOpenError);
    await assert.rejects(openDatabase(path), /already open in this process/);
    untracked.closeSync();
    db.close();
    assert.equal(isOpenInProcess(path), false);
    const reopened = await openDatabase(path);
    reopened.close();
  });
});
