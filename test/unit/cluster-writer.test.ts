/**
 * startClusterWriter gives up a write in flight when a newer epoch is recorded, and only that
 * write: a newer epoch read after the write was answered must not touch the next one (it once
 * crashed the writer's follow loop with an unhandled TypeError, failing a test mid-run).
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import type { ConfigCenter, Versioned } from '../../src/config-center';
import { startClusterWriter } from '../../src/dev/cluster-writer';

const record = (url: string, epoch: number) => ({ node: 'node1', url, epoch, since: new Date(0).toISOString() });

/** A stand-in node: hands each POST to `onWrite`, which answers it (or not). */
async function fakeNode(onWrite: (res: ServerResponse, n: number) => void) {
  let writes = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => onWrite(res, ++writes));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    writes: () => writes,
    close: () =>
      new Promise<void>((resolve) => server.close(() => resolve())).finally(() => server.closeAllConnections()),
  };
}

/** A config center whose reads of the primary record are answered by `answer` (a promise it may hold). */
function fakeCenter(answer: (n: number) => Promise<unknown>): ConfigCenter & { reads: () => number } {
  let reads = 0;
  return {
    describe: 'test center',
    reads: () => reads,
    get: async (): Promise<Versioned<unknown>> => ({ value: await answer(++reads), revision: '1' }),
    compareAndSwap: () => Promise.reject(new Error('not used')),
    watch: () => () => undefined,
    close: () => Promise.resolve(),
  };
}

async function until(what: string, ok: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

void test('a newer epoch read after the write was answered gives up nothing, and the writer goes on', async () => {
  const node = await fakeNode((res, n) => res.end(JSON.stringify({ lsn: n, firstId: n * 10 })));
  let release: (v: unknown) => void = () => undefined;
  const held = new Promise((r) => (release = r));
  // Read 1: the loop finds the primary. Read 2: the follow loop, while the first write is in
  // flight; held until that write is acknowledged, then it says a newer epoch is recorded.
  const center = fakeCenter((n) => (n === 2 ? held : Promise.resolve(record(node.url, 1))));
  const writer = startClusterWriter(center, { token: undefined, followMs: 1, pauseMs: 100 });
  try {
    await until('the follow loop to read the record during the first write', () => center.reads() >= 2);
    await until('the first write to be acknowledged', () => writer.acks.length >= 1);
    release(record(node.url, 2));
    // Positive evidence that the follow loop survived: it reads again during a later write.
    await until('a later write watched by the follow loop', () => node.writes() >= 2 && center.reads() >= 3);
    await until('the later write to be acknowledged', () => writer.acks.length >= 2);
  } finally {
    await writer.stop();
    await node.close();
  }
  assert.equal(writer.acks[0]?.lsn, 1);
  assert.equal(writer.errors, 0, 'no write was given up');
});

void test('a write in flight is given up as soon as a newer epoch is recorded', async () => {
  // The first write is never answered; later ones are.
  let first: ServerResponse | undefined;
  const node = await fakeNode((res, n) => (n === 1 ? (first = res) : res.end(JSON.stringify({ lsn: n, firstId: n }))));
  // A newer epoch is recorded once the first write has reached the node.
  const center = fakeCenter(() => Promise.resolve(record(node.url, node.writes() >= 1 ? 2 : 1)));
  const writer = startClusterWriter(center, { token: undefined, followMs: 1, requestTimeoutMs: 60_000 });
  try {
    await until('the write to be given up', () => writer.errors >= 1);
    await until('a write at the newer epoch', () => writer.acks.length >= 1);
  } finally {
    await writer.stop();
    first?.destroy();
    await node.close();
  }
  assert.equal(writer.acks[0]?.epoch, 2, 'the next write went to the newer epoch');
});
