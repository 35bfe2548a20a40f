/**
 * npm run bench:failover [-- --kills 20]
 *
 * Two kimiclaw nodes (primary + synchronous replica) as processes, etcd as the config center, a
 * Temporal dev server and the worker running monitorCluster, and a client writing continuously
 * through the config center. Each round SIGKILLs the current primary, waits for writes to be
 * acknowledged by the new one, restarts the killed node (recoverNode rejoins it as replica) and
 * waits until it is in sync again. Prints p50/p99 per failover phase (detect, confirm, fence, elect,
 * config (publish), promote, notify), the total from the kill to the first write acknowledged by the new
 * primary, and the acknowledged writes lost (must be 0). Patroni's defaults give ~30 s.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { KimiclawDr } from '../src/client';
import { parseConfig } from '../src/config';
import { openConfigCenter, readPrimary } from '../src/config-center';
import { sequencesOn, startClusterWriter } from '../src/dev/cluster-writer';
import { startEtcd } from '../src/dev/etcd';
import { NodeProcess } from '../src/dev/node-process';
import { startTemporalDevServer } from '../src/dev/servers';
import { newNodeToken } from '../src/dev/token-file';
import { freePort } from '../src/net';
import { startWebhookReceiver } from '../src/notify/receiver';
import { startWorker } from '../src/worker';
import type { FailoverResult } from '../src/workflows/cluster';
import { log } from './env';

const { values: args } = parseArgs({ options: { kills: { type: 'string', default: '20' } } });
const KEY = '/services/kimiclaw/primary';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const percentile = (v: number[], p: number) => {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
};

async function until(what: string, fn: () => Promise<boolean>, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

async function health(url: string): Promise<{ role: string; syncState: string; epoch: number }> {
  const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1_000) });
  return (await res.json()) as { role: string; syncState: string; epoch: number };
}

async function main(): Promise<void> {
  const kills = Number(args.kills);
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const root = await mkdtemp(join(tmpdir(), 'kimiclaw-bench-failover-'));
  const [temporal, etcd, hooks] = await Promise.all([
    startTemporalDevServer({ uiPort: false }),
    startEtcd({ dataDir: join(root, 'etcd') }),
    startWebhookReceiver({ secret: 'bench' }),
  ]);
  const [p1, p2] = [await freePort(), await freePort()];
  const nodes = [new NodeProcess('node1', root, 'kimiclaw', p1), new NodeProcess('node2', root, 'kimiclaw', p2)];
  // A fresh token per run, handed over as the environment, never argv.
  const token = newNodeToken();
  for (const node of nodes) {
    node.env = { KIMICLAW_NODE_TOKENS: token };
    node.createIfMissing = true;
  }
  nodes[0]!.args = ['--role', 'primary', '--replica', `node2=http://127.0.0.1:${p2},sync`];
  nodes[1]!.args = ['--role', 'replica'];
  await nodes[1]!.start();
  await nodes[0]!.start();
  const config = parseConfig({
    temporal: { address: temporal.address, taskQueue: 'bench-failover' },
    storage: { bucket: 'unused' },
    databases: [{ name: 'kimiclaw', nodes: nodes.map((n) => ({ id: n.id, url: n.url, dataDir: n.dataDir })) }],
    metrics: { port: 0 },
    nodeAuth: { token },
    cluster: {
      configCenter: { kind: 'etcd', endpoints: [etcd.endpoint] },
      probeInterval: '250ms',
      webhooks: [{ url: hooks.url, secret: 'bench' }],
    },
  });
  const worker = await startWorker({ config, sdkMetrics: false });
  const client = new Client({ connection: await Connection.connect({ address: temporal.address }) });
  const dr = new KimiclawDr(client, config);
  const center = openConfigCenter(config.cluster.configCenter);
  const writer = startClusterWriter(center, { token: config.nodeAuth.token, key: KEY, batch: 5 });
  const phases: Record<string, number[]> = {};
  const totals: number[] = [];
  try {
    await dr.ensureMonitor('kimiclaw');
    await until('a primary record', async () => !!(await readPrimary(center, KEY)).record);
    for (let round = 1; round <= kills; round++) {
      const record = (await readPrimary(center, KEY)).record!;
      const primary = nodes.find((n) => n.id === record.node)!;
      const other = nodes.find((n) => n !== primary)!;
      await until('the replica in sync', async () => (await health(primary.url)).syncState === 'in-sync');
      const before = writer.acks.length;
      await until('writes flowing', async () => writer.acks.length > before + 20);
      await primary.stop('SIGKILL');
      const killedAt = Date.now();
      await until('a write acknowledged by the new primary', async () =>
        writer.acks.slice(before).some((a) => a.at > killedAt && a.node === other.id),
      );
      const first = writer.acks.find((a) => a.at > killedAt && a.node === other.id)!;
      const total = (first.at - killedAt) / 1000;
      totals.push(total);
      const result = (await client.workflow.getHandle('failover-kimiclaw').result()) as FailoverResult;
      for (const [k, v] of Object.entries(result.phases)) (phases[k] ??= []).push(v / 1000);
      log(
        `  kill ${round}: ${primary.id} → ${result.newPrimary} (epoch ${result.epoch}), first acknowledged write after ${total.toFixed(2)} s; ` +
          Object.entries(result.phases)
            .map(([k, v]) => `${k} ${(v / 1000).toFixed(2)}`)
            .join(', '),
      );
      await primary.start();
      await until('the old primary rejoined', async () => (await health(primary.url)).role === 'replica');
    }
    await writer.stop();
    const record = (await readPrimary(center, KEY)).record!;
    const present = await sequencesOn(nodes.find((n) => n.id === record.node)!.url, config.nodeAuth.token);
    const lost = writer.acked.filter((s) => !present.has(s)).length;
    log('');
    log(`phase      p50      p99   (seconds, ${kills} SIGKILLs of the primary under a steady write load)`);
    for (const k of ['detect', 'confirm', 'fence', 'elect', 'config', 'promote', 'notify']) {
      const v = phases[k] ?? [];
      log(`${k.padEnd(8)} ${percentile(v, 50).toFixed(3).padStart(7)}  ${percentile(v, 99).toFixed(3).padStart(7)}`);
    }
    log(
      `total    ${percentile(totals, 50).toFixed(3).padStart(7)}  ${percentile(totals, 99).toFixed(3).padStart(7)}   kill → first write acknowledged by the new primary (target p50 ≤ 5 s, p99 ≤ 10 s)`,
    );
    log(`acknowledged writes: ${writer.acked.length.toLocaleString('en-US')}, lost: ${lost} (must be 0)`);
    log(
      `webhook deliveries: ${hooks.received.length} for ${kills} failovers (duplicates refused: ${hooks.duplicates})`,
    );
    if (lost > 0) process.exitCode = 1;
  } finally {
    await writer.stop();
    await center.close();
    await worker.shutdown();
    await client.connection.close();
    await Promise.all(nodes.map((n) => n.stop('SIGKILL')));
    await Promise.all([temporal.stop(), etcd.stop(), hooks.close()]);
    await rm(root, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
