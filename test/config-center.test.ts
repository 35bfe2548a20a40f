/**
 * The config center against a real etcd (started here on loopback) and a real file: the same
 * contract tests run over both, then what only one of them has (etcd going away and coming
 * back, several endpoints; the file's lock).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  ConfigCenterUnavailable,
  EtcdCenter,
  FileCenter,
  PRIMARY_KEY,
  casPrimary,
  openConfigCenter,
  readPrimary,
  type ConfigCenter,
  type PrimaryRecord,
  type Versioned,
} from '../src/config-center';
import { startEtcd, type EtcdServer } from '../src/dev/etcd';
import { freePort } from '../src/net';

const TIMEOUT_MS = 1_000;

let workDir: string;
let etcd: EtcdServer;
before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'kimiclaw-config-center-test-'));
  etcd = await startEtcd({ dataDir: join(workDir, 'etcd') });
});
after(async () => {
  await etcd?.stop();
  await rm(workDir, { recursive: true, force: true });
});

/** Deletes every key, so each test starts from an empty store. */
async function wipeEtcd(): Promise<void> {
  const response = await fetch(`${etcd.endpoint}/v3/kv/deleterange`, {
    method: 'POST',
    // key "\0" with range_end "\0" is etcd's "every key".
    body: JSON.stringify({ key: 'AA==', range_end: 'AA==' }),
  });
  assert.equal(response.status, 200, await response.text());
}

let fileCount = 0;

interface Subject {
  name: string;
  /** An empty store, and a way to open (several) centers on it. */
  fresh(): Promise<() => ConfigCenter>;
}

const SUBJECTS: Subject[] = [
  {
    name: 'EtcdCenter',
    fresh: async () => {
      await wipeEtcd();
      return () => openConfigCenter({ kind: 'etcd', endpoints: [etcd.endpoint], timeoutMs: TIMEOUT_MS });
    },
  },
  {
    name: 'FileCenter',
    fresh: async () => {
      const path = join(workDir, `center-${++fileCount}`, 'config.json');
      return () => openConfigCenter({ kind: 'file', path });
    },
  },
];

const record = (epoch: number, node = `node-${epoch}`, failover?: string): PrimaryRecord => ({
  node,
  url: `http://${node}.internal:7070`,
  epoch,
  since: new Date(Date.UTC(2025, 2, 1, 12, epoch)).toISOString(),
  ...(failover ? { failover } : {}),
});

async function waitFor(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Opens centers and watches, and closes them all at the end of a test. */
class Scope {
  private centers: ConfigCenter[] = [];
  private stops: (() => void)[] = [];
  constructor(private readonly opener: () => ConfigCenter) {}
  open(): ConfigCenter {
    const center = this.opener();
    this.centers.push(center);
    return center;
  }
  watch(center: ConfigCenter, key: string): Versioned<unknown>[] {
    const seen: Versioned<unknown>[] = [];
    this.stops.push(center.watch(key, (v) => seen.push(v)));
    return seen;
  }
  async close(): Promise<void> {
    for (const stop of this.stops) stop();
    await Promise.all(this.centers.map((c) => c.close()));
  }
}

/** Resolves for everyone once `count` callers have arrived. */
function barrier(count: number): () => Promise<void> {
  let arrived = 0;
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return () => {
    if (++arrived === count) open();
    return opened;
  };
}

/** The center, with each get() answering only when every racer's get() has answered. */
function readingTogether(center: ConfigCenter, allRead: () => Promise<void>): ConfigCenter {
  return {
    describe: center.describe,
    get: async (key) => {
      const value = await center.get(key);
      await allRead();
      return value;
    },
    compareAndSwap: (key, expected, value) => center.compareAndSwap(key, expected, value),
    watch: (key, onChange) => center.watch(key, onChange),
    close: () => center.close(),
  };
}

async function within<T>(subject: Subject, body: (scope: Scope) => Promise<T>): Promise<T> {
  const scope = new Scope(await subject.fresh());
  try {
    return await body(scope);
  } finally {
    await scope.close();
  }
}

for (const subject of SUBJECTS) {
  void describe(`${subject.name}: the ConfigCenter contract`, () => {
    void test('get of an absent key: no value, revision "0"', () =>
      within(subject, async (scope) => {
        assert.deepEqual(await scope.open().get('/test/absent'), { value: undefined, revision: '0' });
      }));

    void test('compareAndSwap creates with "0", then updates with the revision it returned', () =>
      within(subject, async (scope) => {
        const center = scope.open();
        const created = await center.compareAndSwap('/test/k', '0', { n: 1, nested: { list: [1, 'two'] } });
        assert.equal(created.ok, true);
        assert.ok(created.ok && created.revision !== '0');
        const read = await center.get('/test/k');
        assert.deepEqual(read, { value: { n: 1, nested: { list: [1, 'two'] } }, revision: created.revision });

        const updated = await center.compareAndSwap('/test/k', read.revision, { n: 2 });
        assert.ok(updated.ok);
        assert.notEqual(updated.revision, read.revision);
        assert.deepEqual(await scope.open().get('/test/k'), { value: { n: 2 }, revision: updated.revision });
      }));

    void test('compareAndSwap with a wrong revision fails, writes nothing and returns the current value', () =>
      within(subject, async (scope) => {
        const center = scope.open();
        const first = await center.compareAndSwap('/test/k', '0', 'first');
        assert.ok(first.ok);
        const second = await center.compareAndSwap('/test/k', first.revision, 'second');
        assert.ok(second.ok);
        const expected = { ok: false, current: { value: 'second', revision: second.revision } };
        assert.deepEqual(await center.compareAndSwap('/test/k', '0', 'again'), expected, 'create over an existing key');
        assert.deepEqual(await center.compareAndSwap('/test/k', first.revision, 'stale'), expected, 'stale revision');
        assert.deepEqual(await center.compareAndSwap('/test/k', '999999', 'future'), expected, 'future revision');
        assert.deepEqual(await center.get('/test/k'), expected.current);
        // Not a revision token: a caller bug, not a failed swap.
        await assert.rejects(center.compareAndSwap('/test/k', 'abc', 'x'), TypeError);
      }));

    void test('casPrimary: epochs only grow, the expected epoch must match, a retry succeeds', () =>
      within(subject, async (scope) => {
        const center = scope.open();
        assert.deepEqual(await readPrimary(center), { record: undefined, revision: '0' });
        const absent = await casPrimary(center, 1, record(2));
        assert.equal(absent.ok, false, 'an epoch is expected but none is recorded');

        assert.deepEqual(await casPrimary(center, undefined, record(1, 'node-a')), { ok: true });
        assert.deepEqual(await casPrimary(center, undefined, record(1, 'node-a')), { ok: true }, 'retried create');
        const taken = await casPrimary(center, undefined, record(1, 'node-b'));
        assert.ok(!taken.ok);
        assert.deepEqual(taken.current, record(1, 'node-a'));

        for (const [expected, next] of [
          [1, record(1, 'node-b')], // equal epoch
          [1, record(0, 'node-b')], // lower epoch
          [0, record(2, 'node-b')], // wrong expected epoch
          [2, record(3, 'node-b')], // expected epoch from the future
        ] as const) {
          const result = await casPrimary(center, expected, next);
          assert.ok(!result.ok, `expected ${expected}, next epoch ${next.epoch} must be refused`);
          assert.deepEqual(result.current, record(1, 'node-a'));
          assert.ok(result.reason.length > 0);
        }

        const failover = record(2, 'node-b', 'failover-wf-1');
        assert.deepEqual(await casPrimary(center, 1, failover), { ok: true });
        // The activity is retried after its response was lost: same input, now a no-op success.
        assert.deepEqual(await casPrimary(center, 1, failover), { ok: true });
        // The same epoch from another failover is not a retry.
        assert.equal((await casPrimary(center, 1, record(2, 'node-b', 'failover-wf-2'))).ok, false);
        const { record: stored, revision } = await readPrimary(center);
        assert.deepEqual(stored, failover);
        assert.notEqual(revision, '0');
      }));

    void test('20 concurrent casPrimary racers that all read epoch 5 before any writes: exactly one wins', () =>
      within(subject, async (scope) => {
        assert.deepEqual(await casPrimary(scope.open(), undefined, record(5, 'node-old')), { ok: true });
        // Each racer has its own center, as separate workers would, and none may swap before
        // all have read: every racer but one must then lose on the revision and judge again.
        const allRead = barrier(20);
        const racers = Array.from({ length: 20 }, (_, i) => record(6, `node-${i}`, `failover-${i}`));
        const results = await Promise.all(
          racers.map((next) => casPrimary(readingTogether(scope.open(), allRead), 5, next)),
        );
        const winners = racers.filter((_, i) => results[i]!.ok);
        assert.equal(winners.length, 1, `winners: ${winners.map((w) => w.node).join(', ')}`);
        const { record: stored } = await readPrimary(scope.open());
        assert.deepEqual(stored, winners[0]);
        for (const result of results) {
          if (!result.ok) assert.deepEqual(result.current, winners[0], 'each loser is told who won');
        }
      }));

    void test('watch delivers the current value, then every change in order', () =>
      within(subject, async (scope) => {
        const center = scope.open();
        const seen = scope.watch(center, '/test/w');
        await waitFor('the initial value', () => seen.length === 1);
        assert.deepEqual(seen[0], { value: undefined, revision: '0' });

        // Spaced wider than the file's poll interval, so no change is folded into the next.
        const written: Versioned<unknown>[] = [{ value: undefined, revision: '0' }];
        for (let i = 1; i <= 3; i++) {
          const result = await center.compareAndSwap('/test/w', written[i - 1]!.revision, { i });
          assert.ok(result.ok);
          written.push({ value: { i }, revision: result.revision });
          await new Promise((r) => setTimeout(r, 300));
        }
        await waitFor('the third change', () => seen.length >= 4);
        assert.deepEqual(seen, written);

        // A burst: later values may replace earlier ones, but never the other way round.
        let revision = written[3]!.revision;
        for (let i = 4; i <= 13; i++) {
          const result = await center.compareAndSwap('/test/w', revision, { i });
          assert.ok(result.ok);
          revision = result.revision;
        }
        await waitFor('the last change of the burst', () => (seen.at(-1)?.value as { i: number }).i === 13);
        const order = seen.map((v) => (v.value as { i: number } | undefined)?.i ?? 0);
        assert.deepEqual(
          order,
          [...order].sort((a, b) => a - b),
          `delivered in order: ${order.join(',')}`,
        );
        assert.equal(new Set(order).size, order.length, 'no value delivered twice');
      }));

    void test('a stopped watch delivers nothing more', () =>
      within(subject, async (scope) => {
        const center = scope.open();
        const seen: Versioned<unknown>[] = [];
        const stop = center.watch('/test/s', (v) => seen.push(v));
        await waitFor('the initial value', () => seen.length === 1);
        stop();
        assert.ok((await center.compareAndSwap('/test/s', '0', 'after stop')).ok);
        await new Promise((r) => setTimeout(r, 600));
        assert.equal(seen.length, 1);
      }));
  });
}

/** etcd goes away (SIGTERM or SIGKILL) while a watch runs, then comes back on the same ports. */
function outage(how: 'stop' | 'kill'): Promise<void> {
  return within(SUBJECTS[0]!, async (scope) => {
    const center = scope.open();
    const seen = scope.watch(center, '/test/outage');
    await waitFor('the initial value', () => seen.length === 1);
    const first = await center.compareAndSwap('/test/outage', '0', 'before');
    assert.ok(first.ok);
    await waitFor('the first change', () => seen.length === 2);

    await (how === 'kill' ? etcd.kill() : etcd.stop());
    for (const call of [
      () => center.get('/test/outage'),
      () => center.compareAndSwap('/test/outage', first.revision, 'during'),
    ]) {
      const started = Date.now();
      await assert.rejects(call(), (err: unknown) => {
        assert.ok(err instanceof ConfigCenterUnavailable, String(err));
        assert.ok(err.message.includes(etcd.endpoint), `names the endpoint: ${err.message}`);
        return true;
      });
      assert.ok(Date.now() - started < TIMEOUT_MS + 500, `rejected after ${Date.now() - started} ms`);
    }

    await etcd.restart();
    // Written before the outage, so it survived it (a SIGKILL too: etcd commits with fsync).
    assert.deepEqual(await center.get('/test/outage'), { value: 'before', revision: first.revision });
    const second = await center.compareAndSwap('/test/outage', first.revision, 'after');
    assert.ok(second.ok);
    await waitFor('the change after the restart', () => seen.length >= 3);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(seen, [
      { value: undefined, revision: '0' },
      { value: 'before', revision: first.revision },
      { value: 'after', revision: second.revision },
    ]);
  });
}

void describe('EtcdCenter when etcd goes away', () => {
  for (const how of ['stop', 'kill'] as const) {
    void test(`${how}: calls fail fast with ConfigCenterUnavailable; after restart they work and the watch resumes`, () =>
      outage(how));
  }

  void test('a watch whose stream goes quiet reconnects without delivering anything twice', async () => {
    await wipeEtcd();
    const center = new EtcdCenter({ endpoints: [etcd.endpoint], watchIdleMs: 150 });
    const seen: Versioned<unknown>[] = [];
    const stop = center.watch('/test/idle', (v) => seen.push(v));
    try {
      await waitFor('the initial value', () => seen.length === 1);
      await new Promise((r) => setTimeout(r, 700)); // several idle reconnects
      const written = await center.compareAndSwap('/test/idle', '0', 'x');
      assert.ok(written.ok);
      await waitFor('the change', () => seen.length >= 2);
      await new Promise((r) => setTimeout(r, 400));
      assert.deepEqual(seen, [
        { value: undefined, revision: '0' },
        { value: 'x', revision: written.revision },
      ]);
    } finally {
      stop();
      await center.close();
    }
  });

  void test('an endpoint that accepts connections but never answers times out as ConfigCenterUnavailable', async () => {
    const sockets = new Set<Socket>();
    const silent: Server = createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as { port: number }).port;
    const center = new EtcdCenter({ endpoints: [`http://127.0.0.1:${port}`], timeoutMs: 300 });
    try {
      const started = Date.now();
      await assert.rejects(center.get('/test/x'), (err: unknown) => {
        assert.ok(err instanceof ConfigCenterUnavailable, String(err));
        assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}.*no answer within 300 ms`));
        return true;
      });
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 250 && elapsed < 1_500, `rejected after ${elapsed} ms`);
    } finally {
      await center.close();
      for (const socket of sockets) socket.destroy();
      await new Promise((r) => silent.close(r));
    }
  });

  void test('several endpoints: a dead one is skipped; with all dead the error names each', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const center = new EtcdCenter({ endpoints: [dead, etcd.endpoint], timeoutMs: TIMEOUT_MS });
    const allDead = new EtcdCenter({ endpoints: [dead, `http://127.0.0.1:${await freePort()}`] });
    try {
      assert.equal(center.describe, `etcd at ${dead}, ${etcd.endpoint}`);
      const created = await center.compareAndSwap('/test/multi', '0', 1);
      assert.ok(created.ok);
      assert.deepEqual(await center.get('/test/multi'), { value: 1, revision: created.revision });
      await assert.rejects(allDead.get('/test/multi'), (err: unknown) => {
        assert.ok(err instanceof ConfigCenterUnavailable);
        assert.match(err.message, /^no etcd endpoint answered/);
        assert.equal(err.message.split('ECONNREFUSED').length - 1, 2, err.message);
        return true;
      });
    } finally {
      await center.close();
      await allDead.close();
    }
  });

  void test('a value that is not JSON is reported with its key, not returned', async () => {
    const key = Buffer.from('/test/raw').toString('base64');
    const value = Buffer.from('not json').toString('base64');
    await fetch(`${etcd.endpoint}/v3/kv/put`, { method: 'POST', body: JSON.stringify({ key, value }) });
    const center = new EtcdCenter({ endpoints: [etcd.endpoint] });
    try {
      await assert.rejects(center.get('/test/raw'), /the value of \/test\/raw is not JSON/);
    } finally {
      await center.close();
    }
  });

  void test('bad endpoints are refused when opening', () => {
    assert.throws(() => openConfigCenter({ kind: 'etcd', endpoints: [] }), /endpoints: name at least one/);
    assert.throws(() => openConfigCenter({ kind: 'etcd', endpoints: ['127.0.0.1:2379'] }), /endpoints: .*not a URL/);
    assert.throws(() => openConfigCenter({ kind: 'etcd', endpoints: ['unix:///run/etcd'] }), /endpoints: .*http\(s\)/);
  });
});

void describe('FileCenter on disk', () => {
  void test('stores {key: {value, revision}} and leaves no temp or lock file behind', async () => {
    const dir = await mkdtemp(join(workDir, 'file-'));
    const path = join(dir, 'center.json');
    const center = new FileCenter({ path });
    assert.equal(center.describe, `file ${path}`);
    assert.deepEqual(await casPrimary(center, undefined, record(1)), { ok: true });
    assert.deepEqual(await casPrimary(center, 1, record(2)), { ok: true });
    await center.close();
    assert.deepEqual(JSON.parse(await readFile(path, 'utf8')), { [PRIMARY_KEY]: { value: record(2), revision: '2' } });
    assert.deepEqual(await readdir(dir), ['center.json']);
  });

  void test('a held lock makes writers wait, and give up as ConfigCenterUnavailable', async () => {
    const path = join(await mkdtemp(join(workDir, 'file-')), 'center.json');
    const center = new FileCenter({ path, lockTimeoutMs: 300 });
    await writeFile(`${path}.lock`, JSON.stringify({ pid: 1 }));
    await assert.rejects(center.compareAndSwap('/k', '0', 1), (err: unknown) => {
      assert.ok(err instanceof ConfigCenterUnavailable);
      assert.match(err.message, /another writer has held .*center\.json\.lock/);
      return true;
    });
    assert.deepEqual(await center.get('/k'), { value: undefined, revision: '0' }, 'reads do not wait');
    // Older than 10 s: its writer died; the lock is broken and the write goes through.
    const old = new Date(Date.now() - 11_000);
    await utimes(`${path}.lock`, old, old);
    assert.ok((await center.compareAndSwap('/k', '0', 1)).ok);
    await center.close();
  });

  void test('a file that is not a key map is reported with its path', async () => {
    const path = join(await mkdtemp(join(workDir, 'file-')), 'center.json');
    const center = new FileCenter({ path });
    await writeFile(path, '{"broken"');
    await assert.rejects(center.get('/k'), new RegExp(`file ${path} is not valid JSON`));
    await writeFile(path, JSON.stringify({ '/k': { value: 1 } }));
    await assert.rejects(center.get('/k'), /key \/k must be \{"value": …, "revision": "<n>"\}/);
    await center.close();
  });
});
