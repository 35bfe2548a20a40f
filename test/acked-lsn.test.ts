/**
 * ackedLsn, the highest LSN a node knows to be acknowledged, on a primary, on its replica and on a
 * fenced old primary, whose unacknowledged tail GET /events must never serve (the log archive and a
 * restore read it). Real node processes.
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

interface Health {
  role: string;
  epoch: number;
  lsn: number;
  ackedLsn: number;
  syncState: string;
}
interface Page {
  events: Array<{ lsn: number }>;
  lastLsn: number;
  headLsn: number;
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
const append = (node: NodeProcess, tag: string) =>
  call<{ lsn: number; error?: { code: string } }>(`${node.url}/events`, 'POST', {
    events: Array.from({ length: 3 }, (_, i) => ({ kind: 'test', payload: { tag, i } })),
  });

void describe('ackedLsn on a primary, a replica and a fenced old primary', () => {
  let dir: string;
  let primary: NodeProcess;
  let replica: NodeProcess;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kimiclaw-acked-'));
    const [p1, p2] = [await freePort(), await freePort()];
    primary = testNode('node1', dir, 'kimiclaw', p1);
    replica = testNode('node2', dir, 'kimiclaw', p2);
    primary.args = ['--role', 'primary', '--replica', `node2=http://127.0.0.1:${p2},sync`];
    replica.args = ['--role', 'replica'];
    await replica.start();
    await primary.start();
  });
  after(async () => {
    replica.signal('SIGCONT');
    await Promise.all([primary, replica].map((n) => n.stop('SIGKILL')));
    await rm(dir, { recursive: true, force: true });
  });

  void test('the primary reports what its replica confirmed; the replica what the primary told it', async () => {
    let last = 0;
    for (let i = 0; i < 10; i++) {
      const ack = await append(primary, `a${i}`);
      assert.equal(ack.status, 200);
      last = ack.body.lsn;
    }
    const p = await health(primary);
    assert.equal(p.ackedLsn, last);
    // Told with the next message (a heartbeat at the latest): never beyond its own LSN.
    await waitFor('the replica to learn the acknowledged LSN', async () => (await health(replica)).ackedLsn === last);
    const r = await health(replica);
    assert.ok(r.ackedLsn <= r.lsn);
    const page = (await call<Page>(`${replica.url}/events?afterLsn=0&limit=100000`, 'GET')).body;
    assert.equal(page.lastLsn, last, 'a replica serves what is acknowledged');
  });

  void test('a fenced old primary serves and reports only what was acknowledged, across a restart', async () => {
    const lastAcked = (await append(primary, 'last-acked')).body.lsn;
    await waitFor('the replica to learn it', async () => (await health(replica)).ackedLsn === lastAcked);
    replica.signal('SIGSTOP');
    const unacked = append(primary, 'never-acknowledged');
    await waitFor(
      'the unacknowledged batch committed on the primary',
      async () => (await health(primary)).lsn > lastAcked,
    );
    const before = await health(primary);
    assert.equal(before.ackedLsn, lastAcked, 'committed but not on the replica: not acknowledged');
    // A failover elsewhere fences it (what the failover workflow's fence does).
    const fenced = await call<{ role: string }>(`${primary.url}/demote`, 'POST', { epoch: 2 });
    assert.equal(fenced.body.role, 'fenced');
    assert.equal((await unacked).status, 409, 'the waiting write is refused, never acknowledged');
    const tailLsn = lastAcked + 1;
    for (const round of ['fenced', 'fenced after a restart']) {
      const h = await health(primary);
      assert.equal(h.role, 'fenced', round);
      assert.equal(h.lsn, tailLsn, `${round}: the tail is still in its file`);
      assert.equal(h.ackedLsn, lastAcked, `${round}: its acknowledged LSN is what it knew, not its head`);
      const page = (await call<Page>(`${primary.url}/events?afterLsn=${lastAcked - 1}`, 'GET')).body;
      assert.deepEqual(
        [...new Set(page.events.map((e) => e.lsn))],
        [lastAcked],
        `${round}: GET /events served the unacknowledged tail`,
      );
      const tail = (await call<Page>(`${primary.url}/events?afterLsn=${lastAcked}&toLsn=${tailLsn}`, 'GET')).body;
      assert.equal(tail.events.length, 0, `${round}: GET /events served LSN ${tailLsn}`);
      await primary.stop('SIGKILL');
      await primary.start();
      await sleep(300);
    }
  });
});
