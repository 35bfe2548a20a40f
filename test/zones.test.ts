/**
 * Zone failures on real processes: nodes a1 and a2 in zone a, b1 in zone b; etcd as three members,
 * one in each of zones a, b and c (c is the witness); a worker process per zone. Every process of
 * a zone is killed (SIGKILL) or frozen (SIGSTOP) at once under continuous writes, and the writer's
 * ledger of acknowledged writes is checked on every node afterwards.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { type ConfigCenter, openConfigCenter, readPrimary } from '../src/config-center';
import { type ClusterWriter, startClusterWriter } from '../src/dev/cluster-writer';
import { primaryKey, syncKey, type SyncRecord } from '../src/activities/cluster';
import type { FailoverResult } from '../src/workflows/cluster';
import { steadyZones } from '../src/dev/zones';
import { clusterChecks } from './cluster-checks';
import { EVENTS_CREDENTIAL, Harness, nodeHealth, runCli, startMonitor, waitFor } from './harness';
import { assertLedgerOnNodes, assertOneEventPerPlace } from './ledger';

const KEY = primaryKey('kimiclaw');
const ZONE_OF: Record<string, string> = { a1: 'a', a2: 'a', b1: 'b' };

void describe('zone failure', { timeout: 15 * 60_000 }, () => {
  let h: Harness;
  let center: ConfigCenter;
  let checks: ReturnType<typeof clusterChecks>;
  const workers = new Map<string, ChildProcess>();

  const startZoneWorker = async (zone: string) => {
    const nodes = Object.keys(ZONE_OF).filter((n) => ZONE_OF[n] === zone);
    workers.set(zone, await h.spawnReadyWorker({ env: { DR_NODES: nodes.join(',') } }));
  };
  const member = (zone: string) => h.etcdCluster!.members.find((m) => m.name === zone)!;
  const nodesOf = (zone: string) => h.nodes.filter((n) => ZONE_OF[n.id] === zone);
  const sync = async () => (await center.get(syncKey('kimiclaw'))).value as SyncRecord | undefined;

  /** Every process of a zone at once: its nodes, its etcd member, its worker. */
  function killZone(zone: string): Promise<unknown> {
    return Promise.all([
      ...nodesOf(zone).map((n) => n.stop('SIGKILL')),
      member(zone).kill(),
      new Promise((resolve) => {
        const w = workers.get(zone)!;
        w.once('exit', resolve);
        w.kill('SIGKILL');
      }),
    ]);
  }
  function freezeZone(zone: string, signal: 'SIGSTOP' | 'SIGCONT'): void {
    for (const n of nodesOf(zone)) n.signal(signal);
    if (signal === 'SIGSTOP') member(zone).freeze();
    else member(zone).thaw();
    workers.get(zone)!.kill(signal);
  }
  async function restartZone(zone: string): Promise<void> {
    await Promise.all([...nodesOf(zone).map((n) => n.start()), member(zone).restart()]);
    await startZoneWorker(zone);
  }

  /**
   * Every node up; the recorded primary has each other node in sync; the sync record of its epoch
   * names an in-sync standby in another zone; every replica has the primary's data at the same LSN.
   */
  async function steadyAcrossZones(): Promise<{ primary: string; epoch: number; standby: string }> {
    const found = await waitFor(
      'a steady cluster with its standby in another zone',
      async () => {
        const record = (await readPrimary(center, KEY)).record;
        if (!record) return false;
        const p = await nodeHealth(h.nodes.find((n) => n.id === record.node)!.url).catch(() => undefined);
        const steady = steadyZones(record, p, await sync(), Object.keys(ZONE_OF));
        return steady ?? false;
      },
      120_000,
    );
    assert.notEqual(ZONE_OF[found.standby], ZONE_OF[found.primary], 'the standby is in another zone');
    for (const n of h.nodes.filter((x) => x.id !== found.primary)) await checks.assertSameData(found.primary, n.id);
    return found;
  }

  /** Ledger on every node, and no epoch in which two nodes acknowledged writes. */
  async function assertNothingLost(writer: ClusterWriter): Promise<void> {
    await assertLedgerOnNodes(writer, h.nodes, EVENTS_CREDENTIAL);
    assertOneEventPerPlace(writer);
    const ackers = new Map<number, Set<string>>();
    for (const a of writer.acks) ackers.set(a.epoch, new Set([...(ackers.get(a.epoch) ?? []), a.node]));
    for (const [epoch, nodes] of ackers) {
      assert.equal(nodes.size, 1, `epoch ${epoch} was acknowledged by ${[...nodes].join(' and ')}`);
    }
  }

  before(async () => {
    h = await Harness.start({
      nodes: ['a1', 'a2', 'b1'],
      zones: ['a', 'a', 'b'],
      cluster: true,
      etcdMembers: ['a', 'b', 'c'],
      // Each node renews its leadership lease with the etcd majority (the production shape).
      leaderLease: '3s',
      worker: false,
      config: (base) => ({
        ...base,
        cluster: { ...base.cluster, configCenter: { ...base.cluster!.configCenter!, timeoutMs: 1_000 } },
      }),
    });
    center = openConfigCenter(h.config.cluster.configCenter);
    checks = clusterChecks(h, center);
    // The monitor starts on zone a's worker (the primary's zone), so losing zone a also loses
    // the worker that runs its watch and caches its workflow.
    await startZoneWorker('a');
    await startMonitor(h.client, h.config.temporal.taskQueue);
    await startZoneWorker('b');
  });

  after(async () => {
    await center?.close();
    for (const w of workers.values()) w.kill('SIGCONT');
    await h?.stop();
  });

  void test('the synchronous standby is in the other zone, and cluster status says so', async () => {
    const steady = await steadyAcrossZones();
    assert.deepEqual(steady, { primary: 'a1', epoch: 1, standby: 'b1' });
    assert.deepEqual((await sync())?.zones, { b1: 'b' });
    const cli = await runCli(['cluster', 'status'], h.env());
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /sync: standby b1 \(zone b\) holds every acknowledged write — in another zone/);
    assert.match(cli.stdout, /a2 +replica .* zone a/);
  });

  void test('zone b killed: the standby falls back to zone a (recorded), writes go on, and move back when b returns', async () => {
    const writer = startClusterWriter(center, { token: EVENTS_CREDENTIAL, key: KEY, requestTimeoutMs: 2_000 });
    await waitFor('writes flowing', async () => writer.acked.length >= 200);
    await killZone('b');
    const fellBack = await waitFor('the same-zone fallback recorded', async () => {
      const s = await sync();
      return s?.standbys.join() === 'a2' && s.placement === 'same-zone' ? s : false;
    });
    assert.equal(fellBack.degraded, false, 'a same-zone standby is taken before any degraded mode');
    const cli = await runCli(['cluster', 'status'], h.env());
    assert.match(cli.stdout, /sync: standby a2 \(zone a\) .*SAME-ZONE FALLBACK/);
    const acksAtFallback = writer.acks.length;
    await waitFor(
      'writes acknowledged with the same-zone standby',
      async () => writer.acks.length > acksAtFallback + 50,
    );

    await restartZone('b');
    const back = await waitFor('the standby back in zone b', async () => {
      const s = await sync();
      return s?.standbys.join() === 'b1' && s.placement === 'other-zone' ? s : false;
    });
    assert.equal(back.epoch, 1, 'no failover happened');
    const acksBack = writer.acks.length;
    await waitFor(
      'writes acknowledged with the standby back in zone b',
      async () => writer.acks.length > acksBack + 50,
    );
    await writer.stop();
    await steadyAcrossZones();
    await assertNothingLost(writer);
  });

  for (const [how, zone] of [
    ['killed (SIGKILL)', 'a'],
    ['frozen (SIGSTOP)', 'b'],
  ] as const) {
    void test(`the primary's zone ${how}: failover to the other zone, no acknowledged write lost, the zone rejoins`, async () => {
      const start = await steadyAcrossZones();
      assert.equal(ZONE_OF[start.primary], zone, `the primary ${start.primary} is in zone ${zone}`);
      const writer = startClusterWriter(center, { token: EVENTS_CREDENTIAL, key: KEY, requestTimeoutMs: 2_000 });
      await waitFor('writes flowing', async () => writer.acked.length >= 300);
      const faultAt = Date.now();
      if (how.startsWith('killed')) await killZone(zone);
      else freezeZone(zone, 'SIGSTOP');
      const survivor = (a: { node: string }) => ZONE_OF[a.node] !== zone;
      const first = await waitFor('a write acknowledged in the surviving zone', async () =>
        writer.acks.find((a) => a.at > faultAt && survivor(a)),
      );
      const failover = (await h.client.workflow.getHandle('failover-kimiclaw').result()) as FailoverResult;
      console.log(
        `zone ${zone} ${how}: first write acknowledged by ${first.node} ${first.at - faultAt} ms after the fault; ` +
          `the failover's first failed probe → promoted ${failover.rtoSeconds} s, phases (ms) ${JSON.stringify(failover.phases)}`,
      );
      assert.equal(failover.newPrimary, first.node);
      const acksAfter = writer.acks.length;
      await waitFor('more writes in the surviving zone', async () => writer.acks.length > acksAfter + 50);

      if (how.startsWith('killed')) await restartZone(zone);
      else freezeZone(zone, 'SIGCONT');
      const steady = await steadyAcrossZones();
      assert.notEqual(ZONE_OF[steady.primary], zone, 'the primary stayed in the surviving zone');
      assert.ok(steady.epoch > start.epoch);
      const acksNow = writer.acks.length;
      await waitFor('writes after the zone rejoined', async () => writer.acks.length > acksNow + 50);
      await writer.stop();
      await steadyAcrossZones();
      await assertNothingLost(writer);
    });
  }
});
