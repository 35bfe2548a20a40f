/**
 * Zero-loss automatic failover against real components: a Temporal dev server, etcd as the config
 * center, two kimiclaw nodes as processes (primary + synchronous replica) and a real webhook
 * receiver. monitorCluster detects a SIGKILLed primary and fails over; no acknowledged write is
 * lost; the old primary returns fenced and rejoins; bad requests change nothing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { KimiclawDr } from '../src/client';
import { type ConfigCenter, openConfigCenter, readPrimary } from '../src/config-center';
import { sequencesOn, startClusterWriter } from '../src/dev/cluster-writer';
import { startWebhookReceiver, type WebhookReceiver } from '../src/notify/receiver';
import type { FailoverResult, RecoverNodeResult } from '../src/workflows/cluster';
import { EVENTS_CREDENTIAL, EVENTS_TOKEN, Harness, failureMessages, nodeHealth, runCli, waitFor } from './harness';

const SECRET = 'webhook-test-secret';
const KEY = '/services/kimiclaw/primary';

void describe('failover (Temporal, etcd, node processes, webhook receiver)', () => {
  let h: Harness;
  let dr: KimiclawDr;
  let center: ConfigCenter;
  let hooks: WebhookReceiver;

  before(async () => {
    hooks = await startWebhookReceiver({ secret: SECRET });
    h = await Harness.start({
      nodes: ['node1', 'node2'],
      cluster: true,
      config: (base) => ({
        ...base,
        cluster: { ...base.cluster, webhooks: [{ url: hooks.url, secret: SECRET }] },
      }),
    });
    dr = await KimiclawDr.connect(h.config);
    center = openConfigCenter(h.config.cluster.configCenter);
  });
  after(async () => {
    await center?.close();
    await h?.stop();
    await hooks?.close();
  });

  void test('bad requests are refused, naming the field, and change nothing', async () => {
    await dr.ensureMonitor();
    await waitFor('the primary record', async () => (await readPrimary(center, KEY)).record);
    const before = (await readPrimary(center, KEY)).record!;

    const healthy = await dr.startFailover({ failedNode: 'node1' });
    await assert.rejects(healthy.result(), (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError);
      assert.match(String(err.cause?.message), /failedNode: node node1 answers: primary.*healthy.*force: true/);
      return true;
    });
    const replica = await dr.startFailover({ failedNode: 'node2' });
    await assert.rejects(replica.result(), (err: unknown) => {
      assert.match(String((err as WorkflowFailedError).cause?.message), /node node2 is not the primary/);
      return true;
    });
    // Every workflow says at its top what was wrong, not "Activity task failed".
    const topLevel = (pattern: RegExp) => (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError);
      assert.match(String(err.cause?.message), pattern);
      assert.equal((err.cause as { type?: string }).type, 'InvalidInput');
      return true;
    };
    const unknown = await dr.startFailover({ failedNode: 'node9' });
    await assert.rejects(unknown.result(), topLevel(/unknown node "node9".*node1, node2/));
    const recover = await dr.startRecoverNode({ node: 'node9' });
    await assert.rejects(recover.result(), topLevel(/recovery of node node9 failed: node: unknown node "node9"/));
    const toNowhere = await dr.startSwitchover({ to: 'node9' });
    await assert.rejects(toNowhere.result(), topLevel(/switchover to node9 failed: to: unknown node "node9"/));
    const monitor = await h.client.workflow.start('monitorCluster', {
      taskQueue: h.config.temporal.taskQueue,
      workflowId: 'monitor-nope',
      args: [{ cluster: 'nope' }],
    });
    await assert.rejects(monitor.result(), topLevel(/monitorCluster cannot start: cluster: unknown cluster "nope"/));
    await assert.rejects(dr.startFailover({ failedNode: '' }), /failedNode/);
    const wrongId = await h.client.workflow.start('failover', {
      taskQueue: h.config.temporal.taskQueue,
      workflowId: 'my-failover',
      args: [{ failedNode: 'node1' }],
    });
    await assert.rejects(wrongId.result(), (err: unknown) => {
      assert.match(failureMessages(err), /start failover with the workflow id "failover-kimiclaw"/);
      return true;
    });

    const cli = await runCli(['cluster', 'status'], h.env());
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /primary: node1 .*epoch 1/);
    assert.match(cli.stdout, /node2 +replica/);

    assert.deepEqual((await readPrimary(center, KEY)).record, before);
    assert.equal((await nodeHealth(h.nodes[0]!.url)).role, 'primary');
    assert.equal(hooks.received.length, 0);
  });

  void test('SIGKILL of the primary under writes: failover, no acknowledged write lost, one notification each', async () => {
    await waitFor('replica in sync', async () => (await nodeHealth(h.nodes[0]!.url)).syncState === 'in-sync');
    const writer = startClusterWriter(center, { token: EVENTS_CREDENTIAL, key: KEY });
    await waitFor('writes flowing', async () => writer.acked.length >= 500);
    await h.nodes[0]!.stop('SIGKILL');
    const killedAt = Date.now();
    const ackedBeforeKill = [...writer.acked];
    await waitFor('writes on the new primary', async () => writer.acks.some((a) => a.node === 'node2'), 60_000);
    const firstOnNew = writer.acks.find((a) => a.node === 'node2')!;
    await waitFor(
      'more writes on the new primary',
      async () => writer.acks.filter((a) => a.node === 'node2').length > 20,
    );
    await writer.stop();

    const record = (await readPrimary(center, KEY)).record!;
    assert.equal(record.node, 'node2');
    assert.equal(record.epoch, 2);
    const present = await sequencesOn(h.nodes[1]!.url, EVENTS_CREDENTIAL);
    const lost = writer.acked.filter((s) => !present.has(s));
    assert.deepEqual(lost, [], `${lost.length} acknowledged writes are missing on the new primary`);
    assert.ok(ackedBeforeKill.length >= 500);

    const result = (await h.client.workflow.getHandle('failover-kimiclaw').result()) as FailoverResult;
    assert.equal(result.newPrimary, 'node2');
    assert.equal(result.epoch, 2);
    for (const phase of ['detect', 'confirm', 'fence', 'elect', 'promote', 'config', 'notify'] as const) {
      assert.equal(typeof result.phases[phase], 'number', `phase ${phase} timed`);
    }
    assert.ok(result.rtoSeconds > 0 && result.rtoSeconds < 30, `rto ${result.rtoSeconds}`);
    assert.ok(firstOnNew.at - killedAt < 30_000);

    // The failover has ended with its one delivery done: no activity of it can deliver again.
    assert.deepEqual(
      result.notified.map((n) => n.ok),
      [true],
    );
    assert.equal(hooks.received.length, 1, 'exactly one notification');
    assert.equal(hooks.duplicates, 0);
    assert.equal(hooks.received[0]!.signatureValid, true);
    assert.equal(hooks.received[0]!.event.primary.node, 'node2');
    assert.equal(hooks.received[0]!.event.epoch, 2);

    const metrics = await h.worker!.metrics.registry.metrics();
    assert.match(metrics, /failovers_total\{database="kimiclaw",kind="failover"\} 1/);
    assert.match(metrics, /failover_rto_seconds\{database="kimiclaw"\} \d/);
    assert.match(metrics, /^rto_seconds\{database="kimiclaw"\} \d/m);
  });

  void test('the old primary returns believing it is primary: refused, demoted, rejoins with all data', async () => {
    const old = h.nodes[0]!;
    await old.start();
    const write = await fetch(`${old.url}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${EVENTS_TOKEN}` },
      body: JSON.stringify({ events: [{ kind: 'split', payload: { brain: true } }] }),
    });
    assert.equal(
      write.status,
      409,
      `a write to the returning old primary must be refused; it answered ${JSON.stringify(await write.json())}`,
    );
    const recovered = (await h.client.workflow.getHandle('recover-kimiclaw-node1').result()) as RecoverNodeResult;
    assert.equal(recovered.role, 'replica');
    assert.equal(recovered.epoch, 2);
    const [a, b] = await Promise.all([nodeHealth(old.url), nodeHealth(h.nodes[1]!.url)]);
    assert.equal(a.role, 'replica');
    assert.equal(b.replicas.find((r) => r.id === 'node1')?.state, 'in-sync');
    const [onOld, onNew] = await Promise.all([
      sequencesOn(old.url, EVENTS_CREDENTIAL),
      sequencesOn(h.nodes[1]!.url, EVENTS_CREDENTIAL),
    ]);
    assert.deepEqual(
      [...onOld].sort((x, y) => x - y),
      [...onNew].sort((x, y) => x - y),
    );
  });

  void test('the replica is killed instead: no failover, the primary keeps serving (degraded)', async () => {
    const primary = h.nodes[1]!;
    const replica = h.nodes[0]!;
    await replica.stop('SIGKILL');
    const writer = startClusterWriter(center, { token: EVENTS_CREDENTIAL, key: KEY });
    await waitFor('writes flowing without the replica', async () => writer.acked.length >= 100, 30_000);
    await writer.stop();
    assert.equal((await readPrimary(center, KEY)).record!.node, 'node2');
    assert.equal((await nodeHealth(primary.url)).syncState, 'degraded');
    const sync = (await center.get('/services/kimiclaw/sync')).value as { degraded: boolean };
    assert.equal(sync.degraded, true, 'the degradation is recorded before writes go on alone');
    // A failover now would refuse: no replica is proven to hold every acknowledged write.
    await replica.start();
    await waitFor('replica back in sync', async () => (await nodeHealth(primary.url)).syncState === 'in-sync');
    await waitFor(
      'sync record restored',
      async () => !((await center.get('/services/kimiclaw/sync')).value as { degraded: boolean }).degraded,
    );
  });
});
