/**
 * Failover under faults, against real components (Temporal dev server, etcd, node processes, the
 * worker as its own process): etcd stopped and the worker killed in the middle of a failover, a
 * probe path that flaps, no eligible replica, and a switchover under writes that loses nothing.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { type Server, Socket, createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowNotFoundError } from '@temporalio/client';
import { KimiclawDr } from '../src/client';
import { type ConfigCenter, openConfigCenter, readPrimary } from '../src/config-center';
import { sequencesOn, startClusterWriter } from '../src/dev/cluster-writer';
import { startWebhookReceiver, type WebhookReceiver } from '../src/notify/receiver';
import type { FailoverResult, SwitchoverResult } from '../src/workflows/cluster';
import { EVENTS_CREDENTIAL, Harness, failureMessages, monitorProgress, nodeHealth, waitFor } from './harness';

const KEY = '/services/kimiclaw/primary';

void describe('failover while etcd is down and the worker is killed', () => {
  let h: Harness;
  let dr: KimiclawDr;
  let center: ConfigCenter;
  let hooks: WebhookReceiver;
  let worker: ChildProcess;

  before(async () => {
    hooks = await startWebhookReceiver();
    h = await Harness.start({
      nodes: ['node1', 'node2'],
      cluster: true,
      worker: false,
      config: (base) => ({ ...base, cluster: { ...base.cluster, webhooks: [{ url: hooks.url }] } }),
    });
    dr = await KimiclawDr.connect(h.config);
    center = openConfigCenter(h.config.cluster.configCenter);
    worker = await h.spawnReadyWorker();
  });
  after(async () => {
    await center?.close();
    await h?.stop();
    await hooks?.close();
  });

  void test('exactly one promotion, completed once', async () => {
    // The record a monitor would have written; this test drives the failover by hand.
    const primary = h.nodes[0]!;
    await center.compareAndSwap(KEY, '0', {
      node: 'node1',
      url: primary.url,
      epoch: 1,
      since: new Date().toISOString(),
    });
    await waitFor('replica in sync', async () => (await nodeHealth(primary.url)).syncState === 'in-sync');
    const writer = startClusterWriter(center, { token: EVENTS_CREDENTIAL, key: KEY });
    await waitFor('writes', async () => writer.acked.length >= 200);

    await h.etcd!.stop();
    await primary.stop('SIGKILL');
    await writer.stop();
    const handle = await dr.startFailover({ failedNode: 'node1', reason: 'test: etcd down' });
    // Positive evidence that the failover had its chances: a step that needs the config center
    // failed three times, saying so.
    const pending = await waitFor('the failover to wait for the config center', async () => {
      const activity = (await handle.describe()).raw.pendingActivities?.[0];
      return (activity?.attempt ?? 0) >= 3 && activity;
    });
    assert.match(String(pending.lastFailure?.message), /etcd|config center/);
    assert.equal((await nodeHealth(h.nodes[1]!.url)).role, 'replica', 'promoted without the config center');
    assert.equal((await handle.describe()).status.name, 'RUNNING');

    worker.kill('SIGKILL');
    await new Promise((resolve) => worker.once('exit', resolve));
    await h.etcd!.restart();
    await waitFor('etcd to answer', async () => (await readPrimary(center, KEY)).record);
    assert.equal((await nodeHealth(h.nodes[1]!.url)).role, 'replica', 'promoted with no worker running');
    worker = await h.spawnReadyWorker();

    const result = (await handle.result()) as FailoverResult;
    assert.equal(result.newPrimary, 'node2');
    assert.equal(result.epoch, 2);
    const node2 = await nodeHealth(h.nodes[1]!.url);
    assert.equal(node2.role, 'primary');
    assert.equal(node2.epoch, 2, 'one epoch bump: one promotion');
    assert.deepEqual(
      node2.history.map((e) => e.epoch),
      [2],
    );
    const record = (await readPrimary(center, KEY)).record!;
    assert.deepEqual([record.node, record.epoch], ['node2', 2]);
    const present = await sequencesOn(h.nodes[1]!.url, EVENTS_CREDENTIAL);
    assert.deepEqual(
      writer.acked.filter((s) => !present.has(s)),
      [],
    );
    // The workflow has ended and its delivery succeeded: no activity can deliver again.
    assert.deepEqual(
      result.notified.map((n) => n.ok),
      [true],
    );
    assert.equal(hooks.received.length, 1);
    assert.equal(hooks.duplicates, 0);
  });

  void test('no eligible replica: fails loudly and promotes nothing', async () => {
    // node2 is primary now, node1 is down and was never rejoined: nothing to promote.
    await h.nodes[1]!.stop('SIGKILL');
    const handle = await dr.startFailover({ failedNode: 'node2' });
    await assert.rejects(handle.result(), (err: unknown) => {
      assert.match(failureMessages(err), /no eligible replica: no healthy replica to promote.*nothing was promoted/);
      return true;
    });
    const record = (await readPrimary(center, KEY)).record!;
    assert.deepEqual([record.node, record.epoch], ['node2', 2], 'the record is unchanged');
    await assert.rejects(
      (await dr.startFailover({ cluster: 'nope', failedNode: 'node1' })).result(),
      (err: unknown) => {
        assert.match(failureMessages(err), /unknown cluster "nope"; the clusters are: kimiclaw/);
        return true;
      },
    );
  });
});

/** A TCP proxy whose path can be cut (open connections too): the probes' view of node1. */
async function startFlakyProxy() {
  const open = new Set<Socket>();
  let up = true;
  const proxy = {
    url: '',
    target: 0,
    server: undefined as unknown as Server,
    get up(): boolean {
      return up;
    },
    set up(value: boolean) {
      up = value;
      if (!value) for (const s of open) s.destroy();
    },
  };
  const server = createServer((client: Socket) => {
    if (!up || !proxy.target) return client.destroy();
    const upstream = new Socket();
    upstream.connect(proxy.target, '127.0.0.1');
    for (const s of [client, upstream]) {
      open.add(s);
      s.on('close', () => open.delete(s));
      s.on('error', () => (s === client ? upstream : client).destroy());
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  proxy.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  proxy.server = server;
  return proxy;
}

void describe('monitorCluster does not fail over a flapping or cut-off probe path', () => {
  let h: Harness;
  let dr: KimiclawDr;
  let proxy: Awaited<ReturnType<typeof startFlakyProxy>>;

  before(async () => {
    proxy = await startFlakyProxy();
    h = await Harness.start({
      nodes: ['node1', 'node2'],
      cluster: true,
      // The control plane reaches node1 only through the proxy; replication goes direct.
      config: (base) => ({
        ...base,
        databases: base.databases.map((d) => ({
          ...d,
          nodes: d.nodes.map((n) => (n.id === 'node1' ? { ...n, url: proxy.url } : n)),
        })),
      }),
    });
    proxy.target = Number(new URL(h.nodes[0]!.url).port);
    dr = await KimiclawDr.connect(h.config);
  });
  after(async () => {
    await h?.stop();
    proxy?.server.close();
  });

  void test('flapping, then cut off while the replica still hears the primary: no failover', async () => {
    await dr.ensureMonitor();
    const center = openConfigCenter(h.config.cluster.configCenter);
    try {
      await waitFor('the primary record', async () => (await readPrimary(center, KEY)).record);
      // Flapping: up and down every probe or two.
      for (let i = 0; i < 16; i++) {
        proxy.up = i % 2 === 0;
        await sleep(350);
      }
      // Cut off: probes fail in a row, but node2 hears node1 every 200 ms. Positive evidence that
      // the monitor had its chance: it counted twice the failure threshold of consecutive failed
      // probes (each round also asked the replica) before anything is asserted.
      proxy.up = false;
      const threshold = h.config.cluster.failureThreshold;
      const seen = await waitFor('the monitor to count consecutive failed probes', async () => {
        const progress = await monitorProgress(h.client);
        return progress && progress.failures >= 2 * threshold && progress;
      });
      proxy.up = true;
      assert.ok(seen.probes > seen.failures, 'the monitor probed before and during the cut');
      await assert.rejects(h.client.workflow.getHandle('failover-kimiclaw').describe(), WorkflowNotFoundError);
      assert.equal((await nodeHealth(h.nodes[0]!.url)).role, 'primary');
      assert.equal((await nodeHealth(h.nodes[1]!.url)).role, 'replica');
      assert.equal((await readPrimary(center, KEY)).record!.epoch, 1);
    } finally {
      await center.close();
    }
  });
});

void describe('switchover', () => {
  let h: Harness;
  let dr: KimiclawDr;

  before(async () => {
    h = await Harness.start({ nodes: ['node1', 'node2'], cluster: true });
    dr = await KimiclawDr.connect(h.config);
  });
  after(async () => {
    await h?.stop();
  });

  void test('moves the primary under writes and back, with no acknowledged write lost', async () => {
    const center = openConfigCenter(h.config.cluster.configCenter);
    try {
      await center.compareAndSwap(KEY, '0', {
        node: 'node1',
        url: h.nodes[0]!.url,
        epoch: 1,
        since: new Date().toISOString(),
      });
      await waitFor('in sync', async () => (await nodeHealth(h.nodes[0]!.url)).syncState === 'in-sync');
      const writer = startClusterWriter(center, { token: EVENTS_CREDENTIAL, key: KEY });
      await waitFor('writes', async () => writer.acked.length >= 200);
      const there = (await (await dr.startSwitchover({ to: 'node2', reason: 'test' })).result()) as SwitchoverResult;
      assert.deepEqual([there.from, there.to, there.epoch], ['node1', 'node2', 2]);
      await waitFor('writes on node2', async () => writer.acks.filter((a) => a.node === 'node2').length > 50);
      await waitFor('node1 in sync again', async () => (await nodeHealth(h.nodes[1]!.url)).syncState === 'in-sync');
      const back = (await (await dr.startSwitchover({})).result()) as SwitchoverResult;
      assert.deepEqual([back.from, back.to, back.epoch], ['node2', 'node1', 3]);
      await waitFor(
        'writes on node1',
        async () => writer.acks.filter((a) => a.node === 'node1' && a.epoch === 3).length > 50,
      );
      await writer.stop();
      for (const node of h.nodes) {
        const present = await sequencesOn(node.url, EVENTS_CREDENTIAL).catch(() => new Set<number>());
        if ((await nodeHealth(node.url)).role !== 'primary') continue;
        assert.deepEqual(
          writer.acked.filter((s) => !present.has(s)),
          [],
          'acknowledged writes missing after two switchovers',
        );
      }
      assert.ok(there.writePauseMs < 10_000, `writes paused ${there.writePauseMs} ms`);
      const refused = await dr.startSwitchover({ to: 'node1' });
      await assert.rejects(refused.result(), (err: unknown) => {
        assert.match(failureMessages(err), /to: node1 is already the primary/);
        return true;
      });
    } finally {
      await center.close();
    }
  });
});
