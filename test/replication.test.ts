/**
 * L0 replication and epoch fencing of the reference node, with every node a real process on
 * loopback: acknowledged writes are on the synchronous replica, a stopped replica holds writes
 * back until degraded writes are allowed, a returning replica catches up by LSN, a returning old
 * primary is fenced by the newer epoch and rejoins with its unacknowledged tail discarded.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NodeProcess } from '../src/dev/node-process';
import { freePort } from '../src/net';
import { AUTH, testNode, waitFor } from './harness';

interface Reply<T> {
  status: number;
  body: T;
}
type Health = {
  role: string;
  epoch: number;
  lsn: number;
  rows: number;
  syncState: string;
  allowDegraded: boolean;
  history: Array<{ epoch: number; startLsn: number }>;
  replicas: Array<{ id: string; state: string; appliedLsn: number | null; lagLsn: number | null }>;
  primary?: { id: string; lastContactMsAgo: number };
};
type Stats = { rows: number; checksum: string; maxLsn: number | null; maxId: number | null };
type ErrorBody = { error: { code: string; message: string; epoch?: number; lsn?: number } };

async function call<T>(url: string, method: 'GET' | 'POST', body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? { ...AUTH, ...headers } : { 'content-type': 'application/json', ...AUTH, ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(60_000),
  });
  return { status: res.status, body: (await res.json()) as T } as Reply<T>;
}

const append = (node: NodeProcess, n: number, tag: string, headers: Record<string, string> = {}) =>
  call<{ lsn: number; firstId: number; lastId: number } & ErrorBody>(
    `${node.url}/events`,
    'POST',
    { events: Array.from({ length: n }, (_, i) => ({ kind: 'test', payload: { tag, i } })) },
    headers,
  );
const health = async (node: NodeProcess) => (await call<Health>(`${node.url}/health`, 'GET')).body;
const stats = async (node: NodeProcess) => (await call<Stats>(`${node.url}/stats`, 'GET')).body;

async function sameData(a: NodeProcess, b: NodeProcess): Promise<void> {
  await waitFor(`${b.id} to hold what ${a.id} holds`, async () => {
    const [x, y] = await Promise.all([stats(a), stats(b)]);
    return x.rows === y.rows && x.checksum === y.checksum && x.maxLsn === y.maxLsn ? true : undefined;
  });
}

void describe('replication and fencing (real node processes)', () => {
  let dir: string;
  let n1: NodeProcess;
  let n2: NodeProcess;
  let n3: NodeProcess;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kimiclaw-repl-'));
    const [p1, p2, p3] = [await freePort(), await freePort(), await freePort()];
    n1 = testNode('node1', dir, 'kimiclaw', p1);
    n2 = testNode('node2', dir, 'kimiclaw', p2);
    n3 = testNode('node3', dir, 'kimiclaw', p3);
    n2.args = ['--role', 'replica'];
    n3.args = ['--role', 'replica'];
    n1.args = [
      '--role',
      'primary',
      '--replica',
      `node2=http://127.0.0.1:${p2},sync`,
      '--replica',
      `node3=http://127.0.0.1:${p3},async`,
      '--sync-timeout-ms',
      '20000',
    ];
    await Promise.all([n2.start(), n3.start()]);
    await n1.start();
  });
  after(async () => {
    await Promise.all([n1, n2, n3].map((n) => n.stop('SIGKILL')));
    await rm(dir, { recursive: true, force: true });
  });

  void test('an acknowledged write is already on the synchronous replica', async () => {
    await waitFor('node2 in sync', async () => (await health(n1)).syncState === 'in-sync');
    for (let i = 0; i < 20; i++) {
      const ack = await append(n1, 5, `a${i}`);
      assert.equal(ack.status, 200, JSON.stringify(ack.body));
      const replica = await health(n2);
      assert.ok(replica.lsn >= ack.body.lsn, `node2 has LSN ${replica.lsn} when ${ack.body.lsn} was acknowledged`);
    }
    await sameData(n1, n2);
    await sameData(n1, n3);
    const h = await health(n1);
    assert.equal(h.role, 'primary');
    assert.deepEqual(
      h.replicas.map((r) => [r.id, r.state]),
      [
        ['node2', 'in-sync'],
        ['node3', 'in-sync'],
      ],
    );
    const r = await health(n2);
    assert.equal(r.role, 'replica');
    assert.equal(r.primary?.id, 'node1');
    assert.ok(r.primary.lastContactMsAgo < 2_000, `last contact ${r.primary.lastContactMsAgo} ms ago`);
    // A replica takes no writes.
    const refused = await append(n2, 1, 'x');
    assert.equal(refused.status, 409);
    assert.equal(refused.body.error.code, 'NotPrimary');
  });

  void test('without the synchronous replica writes wait; allowed degraded writes go on; it catches up', async () => {
    await n2.stop('SIGKILL');
    const pending = append(n1, 3, 'while-down');
    // Positive evidence that the primary had its chance to acknowledge: it tried node2 and marked
    // the link down, with the write committed and waiting.
    await waitFor('the primary to find node2 down', async () => {
      const view = await health(n1);
      return view.syncState === 'waiting' && view.replicas.some((r) => r.id === 'node2' && r.state === 'down');
    });
    const early = await Promise.race([pending.then(() => 'answered'), sleep(10).then(() => 'waiting')]);
    assert.equal(early, 'waiting', 'a write was acknowledged without the synchronous replica');
    const h = await health(n1);
    assert.equal(h.syncState, 'waiting');
    // The committed but unacknowledged batch is not served to the log archive.
    const page = await call<{ events: unknown[] }>(`${n1.url}/events?afterLsn=${h.lsn - 1}`, 'GET');
    assert.equal(page.body.events.length, 0, 'an unacknowledged batch was served by GET /events');
    const allowed = await call<Health>(`${n1.url}/replication`, 'POST', { epoch: 1, allowDegraded: true });
    assert.equal(allowed.status, 200);
    assert.equal((await pending).status, 200);
    const served = await call<{ events: unknown[] }>(`${n1.url}/events?afterLsn=${h.lsn - 1}`, 'GET');
    assert.equal(served.body.events.length, 3, 'once acknowledged (degraded), the batch is served');
    assert.equal((await health(n1)).syncState, 'degraded');
    for (let i = 0; i < 5; i++) assert.equal((await append(n1, 10, `degraded${i}`)).status, 200);

    await n2.start();
    await waitFor('node2 back in sync', async () => (await health(n1)).syncState === 'in-sync');
    await sameData(n1, n2);
    const lag = (await health(n1)).replicas.find((r) => r.id === 'node2');
    assert.equal(lag?.lagLsn !== null && lag!.lagLsn <= 1, true, JSON.stringify(lag));
    // In sync again: acknowledgements need it again.
    await call(`${n1.url}/replication`, 'POST', { epoch: 1, allowDegraded: false });
    const ack = await append(n1, 2, 'after');
    assert.ok((await health(n2)).lsn >= ack.body.lsn);
  });

  void test('bad replication requests are refused and change nothing', async () => {
    const before = await health(n1);
    // Promotion needs a newer epoch than the node's own.
    const stale = await call<ErrorBody>(`${n3.url}/promote`, 'POST', { epoch: 1 });
    assert.equal(stale.status, 409);
    assert.equal(stale.body.error.code, 'StaleEpoch');
    const bad = await call<ErrorBody & { error: { field?: string } }>(`${n1.url}/replication`, 'POST', {
      epoch: 1,
      replicas: [{ id: 'x', url: 'ftp://nowhere', mode: 'sync' }],
    });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.message, /http\(s\) URL/);
    const mode = await call<ErrorBody>(`${n1.url}/replication`, 'POST', {
      epoch: 1,
      replicas: [{ id: 'x', url: 'http://127.0.0.1:1', mode: 'sometimes' }],
    });
    assert.equal(mode.status, 400);
    assert.match(mode.body.error.message, /"sync".*"async"/);
    const wrongEpoch = await call<ErrorBody>(`${n1.url}/replication`, 'POST', { epoch: 7, allowDegraded: true });
    assert.equal(wrongEpoch.status, 409);
    const after = await health(n1);
    assert.equal((await health(n3)).role, 'replica');
    assert.equal(after.epoch, before.epoch);
    assert.equal(after.allowDegraded, before.allowDegraded);
    assert.deepEqual(
      after.replicas.map((r) => r.id),
      before.replicas.map((r) => r.id),
    );
  });

  void test('failover: the old primary returns fenced, its unacknowledged tail is discarded, it rejoins', async () => {
    // node2 frozen: node1 commits a batch locally that no replica confirms, then dies.
    const lastAcked = (await append(n1, 4, 'last-acked')).body;
    await sleep(300);
    n2.signal('SIGSTOP');
    const unacked = append(n1, 7, 'never-acknowledged').catch(() => undefined);
    await sleep(500);
    await n1.stop('SIGKILL');
    await unacked;
    n2.signal('SIGCONT');

    // Promote node2 at epoch 2 (what the failover workflow does), node3 as its async replica.
    const promoted = await call<{ epoch: number; lsn: number }>(`${n2.url}/promote`, 'POST', {
      epoch: 2,
      replicas: [{ id: 'node3', url: n3.url, mode: 'async' }],
    });
    assert.equal(promoted.status, 200, JSON.stringify(promoted.body));
    assert.ok(promoted.body.lsn >= lastAcked.lsn, 'the new primary holds every acknowledged write');
    const onNew = await append(n2, 3, 'epoch2', { 'x-kimiclaw-epoch': '2' });
    assert.equal(onNew.status, 200);
    // A client still on epoch 1 is told so.
    const staleClient = await append(n2, 1, 'old-client', { 'x-kimiclaw-epoch': '1' });
    assert.equal(staleClient.status, 409);
    assert.equal(staleClient.body.error.code, 'StaleEpoch');

    // node1 comes back believing it is primary of epoch 1, with node2 as its synchronous replica.
    await n1.start();
    assert.equal((await health(n1)).role, 'primary');
    const split = await append(n1, 2, 'split-brain');
    assert.equal(split.status, 409, `a write to the returning old primary was answered ${split.status}`);
    assert.match(split.body.error.code, /Fenced|StaleEpoch|NotPrimary/);
    assert.equal((await health(n1)).role, 'fenced');
    const fencedWrite = await append(n1, 1, 'still-fenced');
    assert.equal(fencedWrite.body.error.code, 'Fenced');

    // Rejoin: demote to replica of node2, node2 adds it back as synchronous replica.
    const demoted = await call<{ role: string }>(`${n1.url}/demote`, 'POST', {
      epoch: 2,
      primary: { id: 'node2', url: n2.url },
    });
    assert.equal(demoted.body.role, 'replica');
    await call(`${n2.url}/replication`, 'POST', {
      epoch: 2,
      replicas: [
        { id: 'node1', url: n1.url, mode: 'sync' },
        { id: 'node3', url: n3.url, mode: 'async' },
      ],
    });
    await waitFor('node1 in sync with node2', async () => (await health(n2)).syncState === 'in-sync');
    await sameData(n2, n1);
    await sameData(n2, n3);
    const h1 = await health(n1);
    assert.equal(h1.epoch, 2);
    assert.deepEqual(
      h1.history.map((h) => h.epoch),
      [2],
    );
  });
  void test('a write waiting for its replica when the primary is fenced is refused, never acknowledged', async () => {
    // node2 is primary of epoch 2 with node1 as synchronous replica; freeze node1.
    n1.signal('SIGSTOP');
    try {
      const lsn = (await health(n2)).lsn;
      const pending = append(n2, 2, 'waiting-when-fenced');
      // The write is committed on node2 and waits for its frozen replica when the fence comes.
      await waitFor('the write committed and waiting', async () => (await health(n2)).lsn > lsn);
      const fenced = await call<{ role: string }>(`${n2.url}/demote`, 'POST', { epoch: 3 });
      assert.equal(fenced.body.role, 'fenced');
      const answer = await pending;
      assert.equal(
        answer.status,
        409,
        `the waiting write was answered ${answer.status} ${JSON.stringify(answer.body)}`,
      );
      assert.match(answer.body.error.code, /Fenced|NotPrimary/);
    } finally {
      n1.signal('SIGCONT');
    }
  });
});

void describe('a replica too far behind is sent a snapshot, then the log', () => {
  let dir: string;
  let primary: NodeProcess;
  let replica: NodeProcess;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kimiclaw-bootstrap-'));
    const [p1, p2] = [await freePort(), await freePort()];
    primary = testNode('node1', dir, 'kimiclaw', p1);
    replica = testNode('node2', dir, 'kimiclaw', p2);
    primary.args = ['--role', 'primary', '--bootstrap-lag-lsn', '50'];
    replica.args = ['--role', 'replica'];
    await primary.start();
  });
  after(async () => {
    await Promise.all([primary, replica].map((n) => n.stop('SIGKILL')));
    await rm(dir, { recursive: true, force: true });
  });

  void test('a new replica is bootstrapped from a verified snapshot and catches up from its LSN', async () => {
    // Standalone first: 120 batches the replica will not get as log.
    for (let i = 0; i < 120; i++) assert.equal((await append(primary, 20, `before${i}`)).status, 200);
    await replica.start();
    const set = await call<Health>(`${primary.url}/replication`, 'POST', {
      epoch: 1,
      replicas: [{ id: 'node2', url: replica.url, mode: 'sync' }],
    });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    // Writes go on meanwhile; they wait for the replica and are acknowledged once it has them.
    const during = await Promise.all(Array.from({ length: 5 }, (_, i) => append(primary, 10, `during${i}`)));
    for (const d of during) assert.equal(d.status, 200, JSON.stringify(d.body));
    await waitFor('in sync', async () => (await health(primary)).syncState === 'in-sync');
    await sameData(primary, replica);
    const link = (
      await call<{ replicas: Array<{ id: string; bootstraps: number }> }>(`${primary.url}/replication`, 'GET')
    ).body.replicas[0]!;
    assert.equal(link.bootstraps, 1, 'sent one snapshot');
    const r = await health(replica);
    assert.equal(r.role, 'replica');
    assert.equal(r.epoch, 1);
  });
});

void describe('two primaries of different epochs send to one replica at once', () => {
  let dir: string;
  let replica: NodeProcess;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kimiclaw-race-'));
    replica = testNode('node1', dir, 'kimiclaw', await freePort());
    replica.args = ['--role', 'replica'];
    await replica.start();
  });
  after(async () => {
    await replica.stop('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  const batch = (lsn: number, firstId: number, n: number, tag: string) =>
    Array.from({ length: n }, (_, i) => ({
      id: firstId + i,
      lsn,
      ts: '2026-11-30T00:00:00.000000Z',
      kind: 'race',
      payload: JSON.stringify({ tag, i }),
    }));
  const send = (
    epoch: number,
    from: string,
    history: Array<{ epoch: number; startLsn: number }>,
    events: unknown[],
    ackedLsn?: number,
  ) =>
    call<{ lsn: number; epoch: number } & ErrorBody>(`${replica.url}/replicate`, 'POST', {
      epoch,
      primary: { id: from, url: 'http://127.0.0.1:9' },
      history,
      events,
      ...(ackedLsn === undefined ? {} : { ackedLsn }),
    });

  void test('the batch the older epoch sends never stands at an LSN the newer epoch wrote', async () => {
    // Each round: the replica holds lsn L of the current history; the old primary (epoch e) sends a
    // large batch at L+1 that it never acknowledged, and while the replica applies it the new
    // primary (epoch e+1, begun at L) sends its own batch at L+1. Whatever the order, the replica
    // must end with the new primary's batch at L+1 and nothing of the old one in its table.
    let history = [{ epoch: 1, startLsn: 0 }];
    let lsn = 0;
    let nextId = 1;
    const first = await send(1, 'p1', history, batch(1, nextId, 10, 'base'));
    assert.equal(first.status, 200, JSON.stringify(first.body));
    lsn = 1;
    nextId += 10;
    for (let round = 0; round < 6; round++) {
      const epoch = round + 1;
      const newer = [...history, { epoch: epoch + 1, startLsn: lsn }];
      const stale = send(epoch, `p${epoch}`, history, batch(lsn + 1, nextId, 3000, `stale${round}`));
      // Sent right behind it: the old primary's request is being applied when this one arrives.
      await sleep(5);
      const fresh = send(epoch + 1, `p${epoch + 1}`, newer, batch(lsn + 1, nextId + 5000, 7, `fresh${round}`), lsn + 1);
      const [s, f] = await Promise.all([stale, fresh]);
      assert.equal(f.status, 200, `round ${round}: the new primary's batch was refused: ${JSON.stringify(f.body)}`);
      assert.ok([200, 409].includes(s.status), `round ${round}: ${s.status} ${JSON.stringify(s.body)}`);
      const page = await call<{ events: Array<{ id: number; lsn: number; payload: string }> }>(
        `${replica.url}/events?afterLsn=${lsn}`,
        'GET',
      );
      assert.equal(page.status, 200, JSON.stringify(page.body));
      const tags = new Set(page.body.events.map((e) => (JSON.parse(e.payload) as { tag: string }).tag));
      assert.deepEqual([...tags], [`fresh${round}`], `round ${round}: LSN ${lsn + 1} holds ${[...tags].join(', ')}`);
      assert.equal(page.body.events.length, 7);
      const h = await health(replica);
      assert.equal(h.epoch, epoch + 1);
      assert.equal(h.lsn, lsn + 1);
      assert.equal(h.rows, 10 + 7 * (round + 1), `round ${round}: rows`);
      history = newer;
      lsn += 1;
      nextId += 10_000;
    }
  });

  void test("a demotion racing the new primary's first batch keeps the history the replica adopted", async () => {
    // The switchover's order: the replica is told (again) to follow the new primary while that
    // primary's first batches arrive. Whatever the order, the next batch follows on: nothing the
    // replica applied is cut at the fork again, and the new primary is not told its epoch is stale.
    const h0 = await health(replica);
    let history = h0.history;
    let epoch = h0.epoch;
    let lsn = h0.lsn;
    let rows = h0.rows;
    let nextId = 1_000_000;
    for (let round = 0; round < 12; round++) {
      const newer = [...history, { epoch: epoch + 1, startLsn: lsn }];
      const from = `q${epoch + 1}`;
      // The demotion sent a little after the batch, by a different margin each round: it must
      // meet the replica while it adopts the new history.
      const first = send(epoch + 1, from, newer, batch(lsn + 1, nextId, 2000, `first${round}`));
      await sleep(round % 6);
      const demote = call<ErrorBody>(`${replica.url}/demote`, 'POST', {
        epoch: epoch + 1,
        primary: { id: from, url: 'http://127.0.0.1:9' },
      });
      const [d, r] = await Promise.all([demote, first]);
      assert.equal(d.status, 200, `round ${round}: demote ${JSON.stringify(d.body)}`);
      assert.equal(r.status, 200, `round ${round}: first batch ${JSON.stringify(r.body)}`);
      const next = await send(epoch + 1, from, newer, batch(lsn + 2, nextId + 5000, 3, `next${round}`), lsn + 2);
      assert.equal(next.status, 200, `round ${round}: next batch ${JSON.stringify(next.body)}`);
      assert.equal((next.body as unknown as { truncated: number }).truncated, 0, `round ${round}: a batch was cut`);
      const after = await health(replica);
      assert.equal(after.lsn, lsn + 2);
      assert.equal(after.rows, rows + 2003, `round ${round}: rows`);
      assert.deepEqual(after.history, newer);
      history = newer;
      epoch += 1;
      lsn += 2;
      rows += 2003;
      nextId += 10_000;
    }
  });
});
