/**
 * A damaged database file, with every node a real process and every file a real file: the scrub
 * finds 64 KiB overwritten in a running primary's file, the node refuses writes (503 Damaged) and
 * snapshots (409 Damaged) and keeps answering /health; killed, it comes back damaged instead of
 * crash-looping; a file DuckDB refuses to open starts the node damaged; and a replication snapshot
 * from a healthy primary rebuilds a damaged replica, moving its file aside (GET /aside), after which
 * it holds what the primary holds.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { damageBlockInUse, damageHeaders } from '../src/dev/damage';
import type { NodeProcess } from '../src/dev/node-process';
import { freePort } from '../src/net';
import { generateDatabase } from '../src/node/generate';
import { startWriter } from '../src/node/writer';
import { AUTH, EVENTS_CREDENTIAL, testNode, waitFor } from './harness';

interface Damage {
  reason: string;
  detectedBy: string;
  at: string;
}
interface Health {
  status: string;
  writable: boolean;
  damage?: Damage;
  role: string;
  epoch: number;
  lsn: number;
  ackedLsn: number;
  syncState: string;
  replicas: Array<{ id: string; state: string }>;
}
interface ErrorBody {
  error: { code: string; message: string; damage?: Damage };
}
interface Stats {
  lsn: number;
  rows: number;
  checksum: string;
  maxId: number | null;
}

async function call<T>(url: string, method: 'GET' | 'POST', body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? AUTH : { ...AUTH, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(60_000),
  });
  return { status: res.status, body: (await res.json()) as T };
}

const health = async (node: NodeProcess): Promise<Health> => (await call<Health>(`${node.url}/health`, 'GET')).body;
const append = (node: NodeProcess, n = 5) =>
  call<ErrorBody & { lsn: number }>(`${node.url}/events`, 'POST', {
    events: Array.from({ length: n }, (_, i) => ({ kind: 'test', payload: { i } })),
  });
const SCRUB = ['--scrub-interval', '1s', '--scrub-budget-mibps', '256'];

void describe('damage found by the scrub in a running primary', () => {
  let dir: string;
  let node: NodeProcess;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kimiclaw-damage-'));
    node = testNode('node1', dir);
    node.args = ['--role', 'primary', ...SCRUB];
    await generateDatabase(join(node.dataDir, 'kimiclaw.duckdb'), { targetBytes: 12 * 1024 * 1024 });
    await node.start();
  });
  after(async () => {
    await node.stop('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  void test('64 KiB overwritten mid-file: damaged within the scrub interval, writes refused, /health says why', async () => {
    const writer = startWriter({ url: node.url, token: EVENTS_CREDENTIAL, eventsPerBatch: 20, intervalMs: 50 });
    try {
      // Positive evidence that the scrub runs and passes this file before it is damaged.
      await waitFor('a clean scrub pass', async () => {
        const h = (await call<{ scrub?: { ok: boolean | null; bytesChecked: number } }>(`${node.url}/health`, 'GET'))
          .body;
        return h.scrub?.ok === true && h.scrub.bytesChecked > 0;
      });
      assert.equal((await health(node)).status, 'ok');
      const damage = await damageBlockInUse(join(node.dataDir, 'kimiclaw.duckdb'));
      const damagedAt = performance.now();
      const seen = await waitFor(
        'the node to report the damage',
        async () => {
          const h = await health(node);
          return h.status === 'damaged' ? h : undefined;
        },
        15_000,
      );
      const detectionMs = Math.round(performance.now() - damagedAt);
      console.log(
        `damage → detected by the scrub in ${detectionMs} ms (scrub interval 1 s; 64 KiB at block ${damage.blockId})`,
      );
      assert.ok(detectionMs < 10_000, `detected after ${detectionMs} ms`);
      assert.equal(seen.writable, false);
      assert.equal(seen.damage?.detectedBy, 'scrub');
      assert.match(
        seen.damage?.reason ?? '',
        new RegExp(`block ${damage.blockId} at offset ${damage.offset} is damaged`),
      );
    } finally {
      await writer.stop();
    }
    const refused = await append(node);
    assert.equal(refused.status, 503);
    assert.equal(refused.body.error.code, 'Damaged');
    assert.match(refused.body.error.message, /database file is damaged .*block/);
    assert.equal(refused.body.error.damage?.detectedBy, 'scrub');
    const snapshot = await call<ErrorBody>(`${node.url}/snapshot`, 'POST', { path: join(node.dataDir, 'x.duckdb') });
    assert.equal(snapshot.status, 409, 'a backup of a damaged file is refused for good');
    assert.equal(snapshot.body.error.code, 'Damaged');
    // Reads go on where DuckDB can still read: the archive can drain what was acknowledged.
    assert.equal((await call(`${node.url}/events?afterLsn=0&limit=10`, 'GET')).status, 200);
  });

  void test('killed with a damaged file, it comes back damaged and stays up (no crash loop)', async () => {
    const before = await health(node);
    await node.stop('SIGKILL');
    await node.start();
    await sleep(2_000);
    assert.ok(node.running, 'the node exited');
    const after = await health(node);
    assert.equal(after.status, 'damaged');
    assert.deepEqual(after.damage, before.damage, 'the damage found before the kill is what it reports');
    assert.equal(after.lsn, before.lsn);
    assert.equal((await append(node)).body.error.code, 'Damaged');
  });
});

void describe('a scrub pass in progress', () => {
  let dir: string;
  let node: NodeProcess;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kimiclaw-scrub-pass-'));
    node = testNode('node1', dir);
    // 1 MiB/s over 8 MiB: a pass takes seconds, so maintenance arrives in the middle of one.
    node.args = ['--role', 'primary', '--scrub-interval', '500ms', '--scrub-budget-mibps', '1'];
    await generateDatabase(join(node.dataDir, 'kimiclaw.duckdb'), { targetBytes: 8 * 1024 * 1024 });
    await node.start();
  });
  after(async () => {
    await node.stop('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  void test('lets go of the file at once when maintenance closes it', async () => {
    await waitFor(
      'a finished pass',
      async () => {
        const h = (await call<{ scrub?: { lastRunAt: string | null } }>(`${node.url}/health`, 'GET')).body;
        return h.scrub?.lastRunAt !== null;
      },
      60_000,
    );
    await sleep(1_500);
    const started = performance.now();
    const on = await call(`${node.url}/maintenance`, 'POST', { enabled: true, reason: 'during a scrub' });
    assert.equal(on.status, 200, JSON.stringify(on.body));
    assert.ok(performance.now() - started < 3_000, 'maintenance waited for the whole pass');
    const off = await call(`${node.url}/maintenance`, 'POST', { enabled: false });
    assert.equal(off.status, 200, JSON.stringify(off.body));
    assert.equal((await append(node)).status, 200);
  });
});

void describe('a file that prevents start-up', () => {
  let dir: string;
  let node: NodeProcess;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kimiclaw-damage-open-'));
    node = testNode('node1', dir);
    node.createIfMissing = false;
    await generateDatabase(join(node.dataDir, 'kimiclaw.duckdb'), { targetBytes: 2 * 1024 * 1024 });
    await damageHeaders(join(node.dataDir, 'kimiclaw.duckdb'));
  });
  after(async () => {
    await node.stop('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  void test('starts damaged (detected by open), serves /health with the reason and refuses writes', async () => {
    await node.start();
    const h = await health(node);
    assert.equal(h.status, 'damaged');
    assert.equal(h.damage?.detectedBy, 'open');
    assert.match(h.damage?.reason ?? '', /Corrupt database file/);
    assert.equal(h.role, 'none', 'it cannot read what it was');
    const refused = await append(node);
    assert.equal(refused.status, 503);
    assert.equal(refused.body.error.code, 'Damaged');
    await node.stop('SIGTERM');
    await node.start();
    assert.equal((await health(node)).status, 'damaged', 'the same at every start');
  });
});

void describe('a damaged replica is rebuilt from its primary', () => {
  let dir: string;
  let primary: NodeProcess;
  let replica: NodeProcess;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kimiclaw-rebuild-'));
    const [p1, p2] = [await freePort(), await freePort()];
    primary = testNode('node1', dir, 'kimiclaw', p1);
    replica = testNode('node2', dir, 'kimiclaw', p2);
    primary.args = ['--role', 'primary', '--replica', `node2=http://127.0.0.1:${p2},sync`, ...SCRUB];
    replica.args = ['--role', 'replica', ...SCRUB];
    // The replica starts with no database: the primary's snapshot is its first.
    replica.createIfMissing = false;
    await generateDatabase(join(primary.dataDir, 'kimiclaw.duckdb'), { targetBytes: 8 * 1024 * 1024 });
    await replica.start();
    await primary.start();
  });
  after(async () => {
    await Promise.all([primary, replica].map((n) => n.stop('SIGKILL')));
    await rm(dir, { recursive: true, force: true });
  });

  const stats = async (node: NodeProcess, lsn?: number) =>
    (await call<Stats>(`${node.url}/stats${lsn === undefined ? '' : `?lsn=${lsn}`}`, 'GET')).body;

  void test('an empty replica takes a snapshot on demand and catches up', async () => {
    assert.equal((await health(replica)).status, 'empty');
    const asked = await call(`${primary.url}/replication`, 'POST', { epoch: 1, bootstrap: ['node2'] });
    assert.equal(asked.status, 200, JSON.stringify(asked.body));
    await waitFor('node2 in sync', async () => (await health(primary)).syncState === 'in-sync');
    const r = await health(replica);
    assert.equal(r.status, 'ok');
    assert.equal(r.role, 'replica');
    const unknown = await call<ErrorBody>(`${primary.url}/replication`, 'POST', { epoch: 1, bootstrap: ['node9'] });
    assert.equal(unknown.status, 400);
    assert.match(unknown.body.error.message, /node9 is not a replica of this primary/);
  });

  void test('damaged, killed, back damaged; a snapshot rebuilds it, its file moved aside; it rejoins in sync', async () => {
    const acked: number[] = [];
    const writer = startWriter({
      url: primary.url,
      token: EVENTS_CREDENTIAL,
      eventsPerBatch: 20,
      intervalMs: 40,
      onAck: (ack) => acked.push(ack.lsn),
    });
    try {
      await waitFor('acknowledged writes', async () => acked.length >= 10);
      // The replica's file must have blocks on disk to damage: a snapshot checkpoints it.
      await waitFor('node2 scrubbed clean', async () => {
        const h = (await call<{ scrub?: { ok: boolean | null; bytesChecked: number } }>(`${replica.url}/health`, 'GET'))
          .body;
        return h.scrub?.ok === true && h.scrub.bytesChecked > 0;
      });
      await damageBlockInUse(join(replica.dataDir, 'kimiclaw.duckdb'));
      await waitFor('node2 damaged', async () => (await health(replica)).status === 'damaged', 15_000);
      // The primary can no longer reach its synchronous replica: the control plane lets it go on.
      await call(`${primary.url}/replication`, 'POST', { epoch: 1, allowDegraded: true });
      await replica.stop('SIGKILL');
      await replica.start();
      const back = await health(replica);
      assert.equal(back.status, 'damaged', 'killed with a damaged file, it comes back damaged');
      assert.equal(back.damage?.detectedBy, 'scrub');

      const asked = await call(`${primary.url}/replication`, 'POST', { epoch: 1, bootstrap: ['node2'] });
      assert.equal(asked.status, 200, JSON.stringify(asked.body));
      await waitFor('node2 rebuilt and in sync', async () => {
        const [p, r] = await Promise.all([health(primary), health(replica)]);
        return r.status === 'ok' && p.replicas.some((x) => x.id === 'node2' && x.state === 'in-sync');
      });
      await call(`${primary.url}/replication`, 'POST', { epoch: 1, allowDegraded: false });
      const lastBefore = acked.length;
      await waitFor('writes acknowledged with node2 back', async () => acked.length >= lastBefore + 5);
    } finally {
      await writer.stop();
    }
    const aside = await call<{
      aside: Array<{ name: string; bytes: number; reason: string; movedAt: string; expiresAt: string }>;
    }>(`${replica.url}/aside`, 'GET');
    assert.equal(aside.status, 200);
    const moved = aside.body.aside.filter((a) => a.reason === 'damaged');
    assert.equal(moved.length, 1, JSON.stringify(aside.body));
    assert.match(moved[0]!.name, /^kimiclaw\.duckdb\.aside\.\d{8}T\d{9}Z\.damaged$/);
    assert.ok(moved[0]!.bytes > 1024 * 1024, 'the damaged file is kept whole');
    assert.equal(Date.parse(moved[0]!.expiresAt) - Date.parse(moved[0]!.movedAt), 7 * 86_400_000);
    assert.ok(existsSync(join(replica.dataDir, `${moved[0]!.name}.damaged`)), 'its damage marker went with it');

    await waitFor('node2 at the primary LSN', async () => (await health(replica)).lsn === (await health(primary)).lsn);
    const lsn = (await health(primary)).lsn;
    const [p, r] = await Promise.all([stats(primary, lsn), stats(replica, lsn)]);
    assert.deepEqual(
      { rows: r.rows, checksum: r.checksum, maxId: r.maxId },
      { rows: p.rows, checksum: p.checksum, maxId: p.maxId },
      'the rebuilt replica holds what the primary holds',
    );
  });
});
