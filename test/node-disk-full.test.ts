/**
 * A full disk under writes, on a real small file system (a tmpfs this test mounts, as root): the
 * node reports the disk low before it is full, turns unwritable within seconds of the first failed
 * write and answers 503 Unwritable quickly from then on (no storm of 500s), loses no acknowledged
 * write (a ledger of every acknowledgement is checked against the file), and once space is freed
 * reopens its database by itself and comes back fenced, its data intact.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NodeProcess } from '../src/dev/node-process';
import { AUTH, testNode, waitFor } from './harness';

const MIB = 1024 * 1024;
const IS_ROOT = process.getuid?.() === 0;

interface Health {
  status: string;
  writable: boolean;
  role: string;
  lsn: number;
  ackedLsn: number;
  damage?: { reason: string; detectedBy: string };
  disk?: { freeBytes: number; totalBytes: number; low: boolean };
}
interface Ack {
  lsn: number;
  firstId: number;
  lastId: number;
  count: number;
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

void describe('a full disk (tmpfs)', { skip: IS_ROOT ? false : 'mounting a tmpfs needs root' }, () => {
  let dir: string;
  let mount: string;
  let mounted = false;
  let node: NodeProcess;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kimiclaw-full-'));
    mount = join(dir, 'fs');
    await mkdir(mount);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48m', 'tmpfs', mount]);
    mounted = true;
    node = testNode('node1', mount);
    node.args = ['--role', 'primary', '--reopen-interval', '500ms', '--min-free-bytes', String(12 * MIB)];
    await node.start();
  });
  after(async () => {
    await node?.stop('SIGKILL');
    if (mounted) execFileSync('umount', ['-l', mount]);
    await rm(dir, { recursive: true, force: true });
  });

  void test('fills up: low first, then unwritable within seconds, no 500 storm, nothing acknowledged lost; freed: reopened fenced', async () => {
    // Most of the file system taken by something else; the writes fill the rest.
    const filler = join(mount, 'filler');
    await writeFile(filler, Buffer.alloc(22 * MIB, 1));
    const ledger: Ack[] = [];
    const statuses = new Map<string, number>();
    let firstFailureAt: number | undefined;
    let unwritableAt: number | undefined;
    let lowAt: number | undefined;
    let slowestRefusalMs = 0;
    let stop = false;
    const payload = 'x'.repeat(1000);
    const writing = (async () => {
      for (let i = 0; !stop; i++) {
        const started = performance.now();
        const res = await call<Ack & { error?: { code: string } }>(`${node.url}/events`, 'POST', {
          events: Array.from({ length: 100 }, (_, j) => ({ kind: 'fill', payload: { i, j, payload } })),
        });
        const key = `${res.status} ${res.body.error?.code ?? ''}`.trim();
        statuses.set(key, (statuses.get(key) ?? 0) + 1);
        if (res.status === 200) ledger.push(res.body);
        else {
          firstFailureAt ??= performance.now();
          if (unwritableAt !== undefined) slowestRefusalMs = Math.max(slowestRefusalMs, performance.now() - started);
        }
        await sleep(10);
      }
    })();
    const watching = (async () => {
      while (!stop) {
        const h = await health(node);
        if (h.disk?.low) lowAt ??= performance.now();
        if (h.status === 'unwritable') unwritableAt ??= performance.now();
        await sleep(100);
      }
    })();
    try {
      await waitFor('the node to report itself unwritable', async () => unwritableAt !== undefined, 120_000);
      // Writes go on for a while: each one is refused quickly, none is a 500.
      await sleep(2_000);
    } finally {
      stop = true;
      await Promise.all([writing, watching]);
    }
    const h = await health(node);
    console.log(
      `full disk: ${ledger.length} batches acknowledged; answers ${JSON.stringify(Object.fromEntries(statuses))}; ` +
        `low reported ${Math.round((unwritableAt ?? 0) - (lowAt ?? 0))} ms before unwritable; unwritable ` +
        `${Math.round((unwritableAt ?? 0) - (firstFailureAt ?? 0))} ms after the first failed write; slowest refusal ` +
        `${Math.round(slowestRefusalMs)} ms; cause: ${h.damage?.reason}`,
    );
    assert.ok(ledger.length > 20, 'writes were acknowledged before the disk filled');
    assert.equal(h.status, 'unwritable');
    assert.equal(h.writable, false);
    assert.ok(h.damage, 'the cause is given');
    assert.ok(lowAt !== undefined && lowAt < unwritableAt!, 'the disk was reported low before it was full');
    assert.ok(unwritableAt! - firstFailureAt! < 5_000, 'unwritable within seconds of the first failed write');
    assert.ok((statuses.get('503 Unwritable') ?? 0) > 10, JSON.stringify(Object.fromEntries(statuses)));
    assert.ok(
      (statuses.get('500 Internal') ?? 0) <= 2,
      `a storm of 500s: ${JSON.stringify(Object.fromEntries(statuses))}`,
    );
    assert.ok(slowestRefusalMs < 1_000, `a refusal took ${slowestRefusalMs} ms`);

    await rm(filler);
    const back = await waitFor(
      'the node to reopen its database',
      async () => {
        const now = await health(node);
        return now.status === 'ok' ? now : undefined;
      },
      30_000,
    );
    assert.equal(back.role, 'fenced', 'a primary that could not write comes back fenced');
    const refused = await call<{ error: { code: string } }>(`${node.url}/events`, 'POST', {
      events: [{ kind: 'late', payload: 1 }],
    });
    assert.equal(refused.body.error.code, 'Fenced');

    // The ledger against the file: every acknowledged batch is there, whole, under its LSN and ids.
    const byLsn = new Map<number, number[]>();
    for (let after = 0, more = true; more;) {
      const page = await call<{ events: Array<{ id: number; lsn: number }>; lastLsn: number; more: boolean }>(
        `${node.url}/events?afterLsn=${after}&limit=20000`,
        'GET',
      );
      assert.equal(page.status, 200);
      for (const e of page.body.events) byLsn.set(e.lsn, [...(byLsn.get(e.lsn) ?? []), e.id]);
      after = page.body.lastLsn;
      more = page.body.more;
    }
    for (const ack of ledger) {
      const ids = byLsn.get(ack.lsn);
      assert.deepEqual(
        ids,
        Array.from({ length: ack.count }, (_, i) => ack.firstId + i),
        `acknowledged LSN ${ack.lsn} is missing or changed`,
      );
    }
    assert.ok(back.ackedLsn >= ledger[ledger.length - 1]!.lsn);
  });
});
