/**
 * Region failure on real processes: region a holds a1 (primary) and a2 (its synchronous standby),
 * etcd member a, region a's S3 server, Temporal server and worker; region b holds b1 (an
 * asynchronous replica), etcd member b, its own S3 server, Temporal server (none of region a's
 * history) and worker; etcd member c is the witness. Every process of region a is stopped at once
 * under continuous writes; `failoverRegion` runs on region b's Temporal; the writer's ledger counts
 * what region a acknowledged that region b never received (kept aside in a1's files when it
 * rejoins). Then region a returns: its monitor stands down and its schedules pause, and
 * `failbackRegion` on region a's Temporal moves the primary home with no write lost.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { primaryKey, syncKey, type SyncRecord } from '../src/activities/cluster';
import { leaderKey } from '../src/activities/region-failover';
import { type ConfigCenter, openConfigCenter, readPrimary } from '../src/config-center';
import { type ClusterWriter, sequencesKeptAside, sequencesOn, startClusterWriter } from '../src/dev/cluster-writer';
import {
  type TemporalDevServer,
  type Versitygw,
  createBucket,
  startTemporalDevServer,
  startVersitygw,
} from '../src/dev/servers';
import { regionFailbackWorkflowId, regionFailoverWorkflowId } from '../src/failover/region-input';
import { KimiclawDr } from '../src/client';
import { regionCopyWorkflowId } from '../src/region/copy-plan';
import { applySchedules, describeSchedules } from '../src/schedules';
import { S3Store, createS3Client } from '../src/storage/s3';
import type { FailbackRegionResult, FailoverRegionResult } from '../src/workflows/region-failover';
import { clusterChecks } from './cluster-checks';
import { EVENTS_CREDENTIAL, Harness, failureMessages, runCli, startMonitor, waitFor } from './harness';
import { acknowledged, assertLedgerOnNodes, assertOneEventPerPlace } from './ledger';

const KEY = primaryKey('kimiclaw');
const REGION_OF: Record<string, string> = { a1: 'a', a2: 'a', b1: 'b' };
const CREDS_B = { accessKey: 'kimiclaw-region-b', secretKey: 'kimiclaw-region-b-secret' };
const BUCKET_B = 'kimiclaw-backups-b';
const LEASE_TTL_MS = 3_000;

void describe('region failure and failback', { timeout: 15 * 60_000 }, () => {
  let h: Harness;
  let dir: string;
  let s3b: Versitygw;
  let temporalB: TemporalDevServer;
  let clientB: Client;
  let center: ConfigCenter;
  let checks: ReturnType<typeof clusterChecks>;
  let writer: ClusterWriter | undefined;
  let storeB: S3Store;
  const workers = new Map<string, ChildProcess>();

  const member = (name: string) => h.etcdCluster!.members.find((m) => m.name === name)!;
  const nodesOf = (region: string) => h.nodes.filter((n) => REGION_OF[n.id] === region);
  const startRegionWorker = async (region: string) => {
    const env: NodeJS.ProcessEnv = {
      DR_REGION: region,
      DR_NODES: nodesOf(region)
        .map((n) => n.id)
        .join(','),
    };
    if (region === 'b') env.TEMPORAL_ADDRESS = temporalB.address;
    workers.set(region, await h.spawnReadyWorker({ env }));
  };
  const stopWorker = (region: string) =>
    new Promise((resolve) => {
      const w = workers.get(region)!;
      if (w.exitCode !== null || w.signalCode !== null) return resolve(undefined);
      w.once('exit', resolve);
      w.kill('SIGKILL');
    });
  const primary = async () => (await readPrimary(center, KEY)).record!;
  /** Every process of region a at once: nodes, etcd member, worker, S3 server, Temporal server. */
  const loseRegionA = () =>
    Promise.all([
      ...nodesOf('a').map((n) => n.stop('SIGKILL')),
      member('a').kill(),
      stopWorker('a'),
      h.s3.stop(),
      h.temporal.stop(),
    ]);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kimiclaw-region-'));
    [s3b, temporalB] = await Promise.all([
      startVersitygw({ dir: join(dir, 's3-b'), ...CREDS_B }),
      startTemporalDevServer({ uiPort: false }),
    ]);
    await createBucket(s3b.endpoint, CREDS_B, BUCKET_B);
    clientB = new Client({ connection: await Connection.connect({ address: temporalB.address }) });
    h = await Harness.start({
      nodes: ['a1', 'a2', 'b1'],
      cluster: true,
      etcdMembers: ['a', 'b', 'c'],
      leaderLease: `${LEASE_TTL_MS}ms`,
      temporalDb: true,
      worker: false,
      config: (base) => ({
        ...base,
        databases: base.databases.map((db) => ({
          ...db,
          nodes: db.nodes.map((n) => ({ ...n, region: REGION_OF[n.id] })),
        })),
        regions: {
          primary: 'a',
          standby: [
            {
              name: 'b',
              storage: {
                endpoint: s3b.endpoint,
                bucket: BUCKET_B,
                accessKeyId: CREDS_B.accessKey,
                secretAccessKey: CREDS_B.secretKey,
              },
              copyInterval: '1s',
            },
          ],
        },
        cluster: { ...base.cluster, configCenter: { ...base.cluster!.configCenter!, timeoutMs: 1_000 } },
        archive: { interval: '1s' },
      }),
    });
    center = openConfigCenter(h.config.cluster.configCenter);
    checks = clusterChecks(h, center);
    await Promise.all([startRegionWorker('a'), startRegionWorker('b')]);
    // Region a runs the cluster: its schedules and its monitor.
    await applySchedules(h.client, h.config);
    await startMonitor(h.client, h.config.temporal.taskQueue);
    // Region a archives the log into its store, and copies that store to region b's.
    const dr = new KimiclawDr(h.client, h.config);
    await dr.ensureLogArchive('kimiclaw');
    await h.client.workflow.start('copyToRegion', {
      taskQueue: h.config.temporal.taskQueue,
      workflowId: regionCopyWorkflowId('b'),
      args: [{ region: 'b' }],
    });
    storeB = new S3Store(createS3Client(h.config.regions!.standby[0]!.storage), h.config.regions!.standby[0]!.storage);
  });

  after(async () => {
    await writer?.stop();
    await center?.close();
    for (const w of workers.values()) if (w.exitCode === null && w.signalCode === null) w.kill('SIGKILL');
    await clientB?.connection.close().catch(() => undefined);
    await h?.stop();
    await Promise.all([s3b?.stop(), temporalB?.stop()].map((p) => p?.catch(() => undefined)));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /**
   * The primary in region a (a1 or a2), the other node of region a its synchronous standby, b1
   * asynchronous, both in sync, the sync record naming the standby; every node with its data.
   */
  async function steadyInRegionA(): Promise<string> {
    const found = await waitFor(
      'a primary in region a with its synchronous standby there and b1 asynchronous, both in sync',
      async () => {
        const record = await primary().catch(() => undefined);
        if (!record || REGION_OF[record.node] !== 'a') return false;
        const standby = record.node === 'a1' ? 'a2' : 'a1';
        const p = (await checks.health(record.node).catch(() => undefined)) as
          { role: string; replicas?: Array<{ id: string; mode: string; state: string }> } | undefined;
        const sync = (await center.get(syncKey('kimiclaw'))).value as SyncRecord | undefined;
        const link = (id: string) => p?.replicas?.find((r) => r.id === id);
        const steady =
          p?.role === 'primary' &&
          link(standby)?.mode === 'sync' &&
          link(standby)?.state === 'in-sync' &&
          link('b1')?.mode === 'async' &&
          link('b1')?.state === 'in-sync' &&
          sync?.epoch === record.epoch &&
          sync.standbys.join() === standby;
        return steady ? record.node : false;
      },
      120_000,
    );
    for (const n of h.nodes.filter((x) => x.id !== found)) await checks.assertSameData(found, n.id);
    return found;
  }

  async function startOnB(input: Record<string, unknown>, workflowId = regionFailoverWorkflowId('kimiclaw')) {
    return clientB.workflow.start('failoverRegion', {
      taskQueue: h.config.temporal.taskQueue,
      workflowId,
      args: [input],
    });
  }

  void test('bad input is refused on region b, field named, and nothing changes', async () => {
    await steadyInRegionA();
    const before = {
      primary: await primary(),
      epoch: (await center.get('/services/kimiclaw/epoch')).value,
      leader: (await center.get(leaderKey('kimiclaw'))).value as { node: string; epoch: number },
    };
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ toRegion: 'b' }, /confirm: is required; accepted values: true/],
      [{ toRegion: 'b', confirm: false }, /confirm: false is not accepted; accepted values: true/],
      [{ toRegion: 'x', confirm: true }, /toRegion: "x" is not a declared region \(accepted: "a", "b"\)/],
      [{ toRegion: 'a', confirm: true }, /toRegion: region a already holds the primary of kimiclaw \(a1, epoch 1\)/],
      [{ toRegion: 'b', confirm: true }, /force: region a still answers \(a1: primary, epoch 1.*nothing was changed/],
    ];
    for (const [input, expected] of cases) {
      const handle = await startOnB(input);
      const err = await handle.result().then(
        () => assert.fail(`failoverRegion ${JSON.stringify(input)} succeeded`),
        (e: unknown) => e,
      );
      assert.ok(err instanceof WorkflowFailedError, String(err));
      assert.match(failureMessages(err), expected, JSON.stringify(input));
    }
    // The CLI refuses before it starts anything.
    const cli = await runCli(['region', 'failover', '--to', 'b'], {
      ...h.env(),
      TEMPORAL_ADDRESS: temporalB.address,
      DR_REGION: 'b',
    });
    assert.notEqual(cli.code, 0);
    assert.match(cli.stderr, /confirm: is required; accepted values: true/);
    assert.deepEqual(await primary(), before.primary, 'the primary record is unchanged');
    assert.deepEqual((await center.get('/services/kimiclaw/epoch')).value, before.epoch, 'no epoch was taken');
    const leader = (await center.get(leaderKey('kimiclaw'))).value as { node: string; epoch: number };
    assert.deepEqual([leader.node, leader.epoch], [before.leader.node, before.leader.epoch]);
    assert.equal((await checks.health('a1')).role, 'primary');
  });

  void test('region a lost at once: failoverRegion on region b promotes b1; what region a acknowledged alone is counted and kept aside', async () => {
    await steadyInRegionA();
    writer = startClusterWriter(center, { token: EVENTS_CREDENTIAL, key: KEY, requestTimeoutMs: 2_000 });
    await waitFor('writes flowing', async () => writer!.acked.length >= 300);

    // Region b's replica falls behind (frozen for a moment: the lag a slow link between regions
    // makes), so region a holds acknowledged writes region b never received when it is lost.
    const b1 = h.nodes.find((n) => n.id === 'b1')!;
    b1.signal('SIGSTOP');
    const laggingSince = Date.now();
    const frozenAt = writer.acks.length;
    await waitFor('writes acknowledged while b1 lags', async () => writer!.acks.length > frozenAt + 10);
    const faultAt = Date.now();
    await loseRegionA();
    const lastA = writer.acks.filter((a) => REGION_OF[a.node] === 'a').at(-1)!;
    b1.signal('SIGCONT');

    const operatorAt = Date.now();
    const handle = await startOnB({ toRegion: 'b', reason: 'region a lost (test)', confirm: true });
    const result = (await handle.result()) as FailoverRegionResult;
    const first = await waitFor('a write acknowledged by b1', async () =>
      writer!.acks.find((a) => a.at > faultAt && a.node === 'b1'),
    );
    console.log(
      `region a lost: failoverRegion took ${result.rtoSeconds} s (phases ms ${JSON.stringify(result.phases)}); ` +
        `first write acknowledged by b1 ${first.at - operatorAt} ms after the operator's start, ${first.at - faultAt} ms after the fault`,
    );
    assert.equal(result.newPrimary, 'b1');
    assert.equal(result.fromRegion, 'a');
    assert.ok(result.epoch > lastA.epoch);
    // Patroni's rule, seen from the ledger: region a's last acknowledgement came before its lease ran out,
    // and b1 acknowledged nothing before then.
    assert.ok(result.oldLeaseUntil, 'the old primary held a leadership lease');
    assert.ok(lastA.at <= Date.parse(result.oldLeaseUntil!), 'region a stopped acknowledging before its lease expired');
    assert.ok(first.at > lastA.at, 'b1 acknowledged only after region a stopped');
    const syncB = (await center.get(syncKey('kimiclaw'))).value as SyncRecord;
    assert.equal(syncB.degraded, true, 'b1 acknowledges alone, and the sync record says so');
    assert.match(syncB.why ?? '', /region failover from a to b/);

    // Region b's Temporal runs the cluster now: its monitor and the config's schedules.
    const described = await clientB.workflow.getHandle('monitor-kimiclaw').describe();
    assert.equal(described.status.name, 'RUNNING');
    assert.ok((await describeSchedules(clientB)).length > 0, 'the schedules were applied on region b');

    const acksNow = writer.acks.length;
    await waitFor('more writes on b1', async () => writer!.acks.length > acksNow + 100);
    await writer.stop();

    // What region a acknowledged that b1 never received: counted, young, and only region a's.
    const onB1 = await sequencesOn(h.nodes.find((n) => n.id === 'b1')!.url, EVENTS_CREDENTIAL);
    const stranded = writer.acks.flatMap((a) => a.seqs.filter((s) => !onB1.has(s)).map((seq) => ({ seq, ack: a })));
    assert.ok(stranded.length > 0, 'region a acknowledged writes b1 had not received when it was lost');
    for (const { seq, ack } of stranded) {
      assert.equal(REGION_OF[ack.node], 'a', `seq ${seq} acknowledged by ${ack.node} is missing on b1`);
      // RPO = the replica's lag: only what was acknowledged after b1 stopped receiving (and what
      // was in flight to it then) is missing.
      assert.ok(
        ack.at >= laggingSince - 1_000,
        `seq ${seq} was acknowledged ${laggingSince - ack.at} ms before b1 began to lag`,
      );
    }
    console.log(
      `region a lost: ${stranded.length} acknowledged writes stranded in region a, ` +
        `the oldest ${stranded.length ? faultAt - Math.min(...stranded.map((s) => s.ack.at)) : 0} ms before the fault ` +
        `(b1 lagged ${faultAt - laggingSince} ms)`,
    );
    strandedSeqs = new Set(stranded.map((s) => s.seq));
    await assertLedgerOnNodes(writer, [h.nodes.find((n) => n.id === 'b1')!], EVENTS_CREDENTIAL, {
      ignore: (seq) => strandedSeqs.has(seq),
    });
  });

  let strandedSeqs = new Set<number>();

  void test('region a returns: its monitor stands down and its schedules pause; failbackRegion moves the primary home with nothing lost', async () => {
    assert.equal((await primary()).node, 'b1', 'the previous test left b1 primary');
    await Promise.all([...nodesOf('a').map((n) => n.start()), member('a').restart(), h.s3.start()]);
    await h.restartTemporal();
    h.client = new Client({ connection: await Connection.connect({ address: h.temporal.address }) });
    await startRegionWorker('a');
    const stood = (await h.client.workflow.getHandle('monitor-kimiclaw').result()) as {
      stoodDown: string;
      paused: string[];
    };
    assert.match(stood.stoodDown, /the primary of kimiclaw is b1 in region b/);
    const schedulesA = await describeSchedules(h.client);
    assert.ok(schedulesA.length > 0 && schedulesA.every((s) => s.paused), 'region a paused its schedules');
    // a1 came back as the primary of its old epoch, and must not acknowledge under it.
    const a1 = await checks.health('a1');
    assert.notEqual((a1 as unknown as { leaderLease?: { open: boolean } }).leaderLease?.open, true);

    writer = startClusterWriter(center, { token: EVENTS_CREDENTIAL, key: KEY, requestTimeoutMs: 2_000 });
    await waitFor('writes flowing on b1', async () => writer!.acked.length >= 100);
    // Region a's copy did not end with its monitor: it copies region b's store into region a's
    // while region b runs the cluster (region a's archiver is stopped, so only the copy can bring
    // what region b archives now).
    const storeA = new S3Store(createS3Client(h.config.storage), h.config.storage);
    const keysOf = async (store: S3Store) => new Set((await store.list('')).map((o) => o.key));
    const before = await keysOf(storeB);
    const grown = await waitFor("region b's store to receive new objects", async () => {
      const now = await keysOf(storeB);
      return [...now].some((k) => !before.has(k)) && now;
    });
    await waitFor("region b's new objects copied into region a's store", async () => {
      const inA = await keysOf(storeA);
      return [...grown].every((k) => inA.has(k));
    });
    const copying = await h.client.workflow.getHandle(regionCopyWorkflowId('b')).describe();
    assert.equal(copying.status.name, 'RUNNING', "region a's copy is still running");
    const handle = await h.client.workflow.start('failbackRegion', {
      taskQueue: h.config.temporal.taskQueue,
      workflowId: regionFailbackWorkflowId('kimiclaw'),
      args: [{ toRegion: 'a', confirm: true, reason: 'region a is back (test)' }],
    });
    const result = (await handle.result()) as FailbackRegionResult;
    console.log(
      `failback to region a: ${result.from} → ${result.to} at epoch ${result.epoch}, writes paused ${result.writePauseMs} ms; ` +
        `rejoined ${JSON.stringify(result.rejoined)}`,
    );
    assert.equal(REGION_OF[result.to], 'a');
    assert.ok(result.storeSynced, "region a's store took what region b's received meanwhile");
    // Back home, the copy runs from region a to region b again (restarted by the failback).
    await waitFor("region a's copy to region b running again", async () => {
      const d = await h.client.workflow.getHandle(regionCopyWorkflowId('b')).describe();
      return d.status.name === 'RUNNING' && d.runId !== copying.runId;
    });
    const acksNow = writer.acks.length;
    await waitFor('writes on region a again', async () => writer!.acks.length > acksNow + 100);
    const standDownB = (await clientB.workflow.getHandle('monitor-kimiclaw').result()) as { stoodDown: string };
    assert.match(standDownB.stoodDown, /in region a/);
    await writer.stop();

    // Every node, nothing lost but what region a had stranded; and that is in a1's files, aside.
    await steadyInRegionA();
    const final = (await primary()).node;
    for (const n of h.nodes.filter((x) => x.id !== final)) await checks.assertSameData(final, n.id);
    await assertLedgerOnNodes(writer, h.nodes, EVENTS_CREDENTIAL, { ignore: (seq) => strandedSeqs.has(seq) });
    assertOneEventPerPlace(writer);
    const kept = await sequencesKeptAside(h.nodes.find((n) => n.id === 'a1')!.dataDir);
    for (const seq of strandedSeqs) assert.ok(kept.has(seq), `stranded seq ${seq} is kept aside on a1`);
    console.log(`failback: ${strandedSeqs.size} stranded writes found aside on a1 (${kept.size} events kept)`);
    assert.ok(acknowledged(writer).size > 0);
  });

  void test("region b without a replica: failoverRegion restores b1 from region b's store (newest backup + archived log)", async () => {
    const home = await steadyInRegionA();
    writer = startClusterWriter(center, { token: EVENTS_CREDENTIAL, key: KEY, requestTimeoutMs: 2_000 });
    await waitFor('writes flowing', async () => writer!.acked.length >= 200);
    const backing = await new KimiclawDr(h.client, h.config).startBackup({ tier: 'L2' });
    const backup = await backing.result();
    await waitFor('the backup copied to region b', async () =>
      (await storeB.list('')).some((o) => o.key.includes(backup.backupId)),
    );
    // Region b's node loses its disk: region b has no replica with data when region a is lost.
    const b1 = h.nodes.find((n) => n.id === 'b1')!;
    await b1.stop('SIGKILL');
    await rm(b1.dataDir, { recursive: true, force: true });
    const acks = writer.acks.length;
    await waitFor('writes acknowledged in region a alone', async () => writer!.acks.length > acks + 200);

    const faultAt = Date.now();
    await loseRegionA();
    await b1.start();
    const operatorAt = Date.now();
    const result = (await (
      await startOnB({ toRegion: 'b', reason: 'region a lost, b1 empty (test)', confirm: true })
    ).result()) as FailoverRegionResult;
    const first = await waitFor('a write acknowledged by b1', async () =>
      writer!.acks.find((a) => a.at > faultAt && a.node === 'b1'),
    );
    await writer.stop();
    assert.equal(result.method, 'restored');
    assert.equal(result.newPrimary, 'b1');
    const onB1 = await sequencesOn(b1.url, EVENTS_CREDENTIAL);
    const missing = writer.acks.flatMap((a) => a.seqs.filter((s) => !onB1.has(s)).map((seq) => ({ seq, ack: a })));
    const span = missing.length ? (faultAt - Math.min(...missing.map((m) => m.ack.at))) / 1000 : 0;
    console.log(
      `region a lost with b1 empty (primary was ${home}): restored from region b's store in ${result.phases.restore} ms ` +
        `(${result.restored?.segmentsReplayed} segments replayed to LSN ${result.restored?.finalLsn}); failoverRegion ${result.rtoSeconds} s; ` +
        `first write acknowledged by b1 ${first.at - operatorAt} ms after the operator's start; ` +
        `RPO ${missing.length} acknowledged writes, the oldest ${span.toFixed(2)} s before the fault; restore: ${result.restored?.reason}`,
    );
    for (const { seq, ack } of missing) {
      assert.equal(REGION_OF[ack.node], 'a', `seq ${seq} acknowledged by ${ack.node} is missing on b1`);
    }
    // RPO from the copied archive alone: the archive interval (1 s) + the copy interval (1 s) and
    // the passes themselves; the target is 15 s.
    assert.ok(span <= 15, `acknowledged writes up to ${span} s before the fault are missing (target ≤ 15 s)`);
    await assertLedgerOnNodes(writer, [b1], EVENTS_CREDENTIAL, {
      ignore: (seq) => missing.some((m) => m.seq === seq),
    });
    assertOneEventPerPlace(writer, (lsn) => lsn > result.lsn);
  });
});
