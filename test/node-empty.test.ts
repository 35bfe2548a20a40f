/**
 * A node started without its database never starts a new history by itself: it waits "empty",
 * refuses writes, and is told what it is by POST /initialize (once) — or by --init when whoever
 * starts it asserts a new cluster. Real node processes.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { NodeProcess } from '../src/dev/node-process';
import { freePort } from '../src/net';
import { AUTH, testNode, waitFor } from './harness';

interface Health {
  status: string;
  writable: boolean;
  role: string;
  epoch: number;
  lsn: number;
  syncState: string;
}
interface ErrorBody {
  error: { code: string; message: string; field?: string };
}

async function call<T>(url: string, method: 'GET' | 'POST', body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? AUTH : { ...AUTH, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, body: (await res.json()) as T };
}

const health = async (node: NodeProcess): Promise<Health> => (await call<Health>(`${node.url}/health`, 'GET')).body;
const append = (node: NodeProcess) =>
  call<ErrorBody & { lsn: number }>(`${node.url}/events`, 'POST', { events: [{ kind: 'test', payload: 1 }] });

void describe('an empty node', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kimiclaw-empty-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  void test('waits empty, refuses writes, is initialized once (409 after), and keeps what it became', async () => {
    const node = testNode('lonely', dir);
    node.createIfMissing = false;
    try {
      await node.start();
      const h = await health(node);
      assert.equal(h.status, 'empty');
      assert.equal(h.writable, false);
      assert.equal(h.role, 'none');
      assert.equal(existsSync(join(node.dataDir, 'kimiclaw.duckdb')), false, 'it created no database');
      const refused = await append(node);
      assert.equal(refused.status, 503);
      assert.equal(refused.body.error.code, 'Empty');
      const snapshot = await call<ErrorBody>(`${node.url}/snapshot`, 'POST', { path: join(node.dataDir, 's.duckdb') });
      assert.equal(snapshot.status, 409);
      assert.equal(snapshot.body.error.code, 'Empty');
      const bad = await call<ErrorBody>(`${node.url}/initialize`, 'POST', { role: 'leader', epoch: 1 });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error.field, 'role');

      const made = await call<{ role: string; epoch: number; lsn: number }>(`${node.url}/initialize`, 'POST', {
        role: 'primary',
        epoch: 3,
      });
      assert.equal(made.status, 200, JSON.stringify(made.body));
      assert.deepEqual(
        { role: made.body.role, epoch: made.body.epoch, lsn: made.body.lsn },
        { role: 'primary', epoch: 3, lsn: 0 },
      );
      const first = await append(node);
      assert.equal(first.status, 200);
      assert.equal(first.body.lsn, 1, 'a new cluster starts at LSN 1');
      const again = await call<ErrorBody>(`${node.url}/initialize`, 'POST', { role: 'replica', epoch: 4 });
      assert.equal(again.status, 409);
      assert.equal(again.body.error.code, 'NotEmpty');

      await node.stop('SIGKILL');
      await node.start();
      const back = await health(node);
      assert.deepEqual([back.status, back.role, back.epoch, back.lsn], ['ok', 'primary', 3, 1]);
    } finally {
      await node.stop('SIGKILL');
    }
  });

  void test('initialized as a replica, its primary feeds it from LSN 0', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const primary = testNode('first', dir, 'kimiclaw', p1);
    const replica = testNode('second', dir, 'kimiclaw', p2);
    primary.args = ['--role', 'primary', '--replica', `second=http://127.0.0.1:${p2},sync`];
    replica.createIfMissing = false;
    try {
      await replica.start();
      await primary.start();
      // Writes wait for the synchronous replica, which refuses (503 Empty) until it is initialized.
      await waitFor(
        'the primary to find its replica empty',
        async () => (await health(primary)).syncState === 'waiting',
      );
      const pending = append(primary);
      const made = await call(`${replica.url}/initialize`, 'POST', { role: 'replica', epoch: 1 });
      assert.equal(made.status, 200, JSON.stringify(made.body));
      assert.equal((await pending).status, 200, 'acknowledged once the replica holds it');
      await waitFor('in sync', async () => (await health(primary)).syncState === 'in-sync');
      const r = await health(replica);
      assert.deepEqual([r.status, r.role, r.lsn], ['ok', 'replica', 1]);
    } finally {
      await Promise.all([primary.stop('SIGKILL'), replica.stop('SIGKILL')]);
    }
  });

  void test('--init creates a missing database in the role given, once', async () => {
    const node = testNode('fresh', dir);
    node.args = ['--role', 'replica'];
    try {
      await node.start();
      const h = await health(node);
      assert.deepEqual([h.status, h.role, h.epoch], ['ok', 'replica', 1]);
      assert.ok(existsSync(join(node.dataDir, 'kimiclaw.duckdb')));
      const refused = await call<ErrorBody>(`${node.url}/initialize`, 'POST', { role: 'primary', epoch: 1 });
      assert.equal(refused.body.error.code, 'NotEmpty');
    } finally {
      await node.stop('SIGKILL');
    }
  });
});
