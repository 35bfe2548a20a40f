/**
 * One topology change at a time, and a safe fencing order, against real components (Temporal dev
 * server, etcd, three node processes, a webhook receiver that answers slowly so that each change
 * holds the lease for a few seconds): a switchover while a failover runs is refused naming it; two
 * switchovers at once, one refused; a failover needed while recoverNode waits for a dead node is
 * not blocked; a lease whose holder died expires and the next change proceeds; a failover takes
 * over a drill's lease; leaving degraded mode never names a standby that lacks acknowledged
 * writes; a refused publish leaves nothing promoted.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { KimiclawDr } from '../src/client';
import { type ConfigCenter, type PrimaryRecord, openConfigCenter, readPrimary } from '../src/config-center';
import { acquireLease, isLive, readLease, releaseLease, renewLease } from '../src/config-center/lease';
import { sequencesOn, startClusterWriter } from '../src/dev/cluster-writer';
import { startWebhookReceiver, type WebhookReceiver } from '../src/notify/receiver';
import type { SyncRecord } from '../src/activities/cluster';
import type { FailoverResult, SwitchoverResult } from '../src/workflows/cluster';
import { EVENTS_CREDENTIAL, Harness, failureMessages, nodeHealth, waitFor } from './harness';

const KEY = '/services/kimiclaw/primary';
const SYNC_KEY = '/services/kimiclaw/sync';
/** Each notification takes this long: the change that sends it holds the lease meanwhile. */
const WEBHOOK_DELAY_MS = 2_500;

/** The failure's type and its whole message chain. */
function failure(err: unknown): { type?: string; message: string } {
  assert.ok(err instanceof WorkflowFailedError, `expected a failed workflow, got ${String(err)}`);
  return { type: (err.cause as { type?: string } | undefined)?.type, message: failureMessages(err) };
}

void describe('one topology change at a time (Temporal, etcd, three nodes)', () => {
  let h: Harness;
  let dr: KimiclawDr;
  let center: ConfigCenter;
  let hooks: WebhookReceiver;

  const primaryRecord = async () => (await readPrimary(center, KEY)).record!;
  const syncRecord = async () => (await center.get(SYNC_KEY)).value as SyncRecord | undefined;
  const node = (id: string) => h.nodes.find((n) => n.id === id)!;
  /** Every node up is a replica in sync with the recorded primary, and the record proves a standby. */
  const steady = async () => {
    await waitFor(
      'a steady cluster',
      async () => {
        const record = await primaryRecord();
        const primary = await nodeHealth(node(record.node).url);
        const sync = await syncRecord();
        const up = h.nodes.filter((n) => n.running && n.id !== record.node);
        return (
          primary.role === 'primary' &&
          up.every((n) => primary.replicas.some((r) => r.id === n.id && r.state === 'in-sync')) &&
          sync?.epoch === record.epoch &&
          !sync.degraded &&
          sync.standbys.length > 0
        );
      },
      90_000,
    );
    return primaryRecord();
  };
  const leaseHeldBy = (prefix: string) =>
    waitFor(`the lease held by ${prefix}`, async () => {
      const lease = await readLease(center, 'kimiclaw');
      return isLive(lease, Date.now()) && lease.holder.startsWith(prefix) && lease;
    });

  before(async () => {
    hooks = await startWebhookReceiver({ delayMs: WEBHOOK_DELAY_MS });
    h = await Harness.start({
      nodes: ['node1', 'node2', 'node3'],
      cluster: true,
      config: (base) => ({
        ...base,
        cluster: {
          ...base.cluster,
          webhooks: [{ url: hooks.url }],
          lease: { ttl: '3s', failoverWait: '30s' },
        },
      }),
    });
    dr = await KimiclawDr.connect(h.config);
    center = openConfigCenter(h.config.cluster.configCenter);
    await dr.ensureMonitor();
    await steady();
  });
  after(async () => {
    await center?.close();
    await h?.stop();
    await hooks?.close();
  });

  void test('a switchover started while a failover runs is refused, naming the failover', async () => {
    const failover = await dr.startFailover({ failedNode: 'node1', force: true, reason: 'test: lease' });
    await leaseHeldBy('failover-kimiclaw/');
    const switchover = await dr.startSwitchover({});
    const refused = await switchover
      .result()
      .then(() => assert.fail('the switchover ran while the failover held the lease'), failure);
    assert.equal(refused.type, 'TopologyBusy');
    assert.match(refused.message, /another topology change is in progress, failover held by failover-kimiclaw\//);
    const result = (await failover.result()) as FailoverResult;
    const record = await primaryRecord();
    assert.deepEqual([record.node, record.epoch], [result.newPrimary, result.epoch], 'the switchover changed nothing');
    await h.client.workflow.getHandle(result.recoverWorkflowId).result();
    await steady();
  });

  void test('two switchovers at once: one moves the primary, the other is refused naming it', async () => {
    const before = await steady();
    const ids = ['switchover-kimiclaw-test-a', 'switchover-kimiclaw-test-b'];
    const handles = await Promise.all(ids.map((workflowId) => dr.startSwitchover({}, { workflowId })));
    const outcomes = await Promise.allSettled(handles.map((x) => x.result() as Promise<SwitchoverResult>));
    const won = outcomes.flatMap((o, i) => (o.status === 'fulfilled' ? [{ id: ids[i]!, result: o.value }] : []));
    const lost = outcomes.flatMap((o) => (o.status === 'rejected' ? [failure(o.reason)] : []));
    assert.equal(won.length, 1, `exactly one switchover ran: ${lost.map((l) => l.message).join(' | ')}`);
    assert.equal(lost[0]?.type, 'TopologyBusy');
    assert.match(lost[0]!.message, new RegExp(`switchover held by ${won[0]!.id}/`));
    const after = await steady();
    assert.equal(after.epoch, before.epoch + 1, 'one epoch bump: one switchover');
    assert.equal(after.node, won[0]!.result.to);
  });

  void test('a lease whose holder died expires, and the next change proceeds', async () => {
    const before = await steady();
    const dead = 'switchover-kimiclaw-dead/run-1';
    const taken = await acquireLease(center, 'kimiclaw', { holder: dead, purpose: 'switchover', ttlMs: 3_000 });
    assert.equal(taken.ok, true);
    const refused = await (
      await dr.startSwitchover({})
    )
      .result()
      .then(() => assert.fail('ran under a live lease'), failure);
    assert.match(refused.message, /switchover held by switchover-kimiclaw-dead\/run-1/);
    // Nobody renews it: positive evidence that its time passed before the next attempt.
    await waitFor(
      'the dead holder’s lease to expire',
      async () => !isLive(await readLease(center, 'kimiclaw'), Date.now()),
    );
    const result = (await (await dr.startSwitchover({})).result()) as SwitchoverResult;
    assert.equal(result.epoch, before.epoch + 1);
    assert.equal((await renewLease(center, 'kimiclaw', dead, 3_000)).kind, 'lost');
  });

  void test('a change its holder starts itself runs under the holder’s lease; others are refused', async () => {
    const before = await steady();
    const parent = 'restore-kimiclaw-test/run-1';
    assert.equal(
      (await acquireLease(center, 'kimiclaw', { holder: parent, purpose: 'restore', ttlMs: 60_000 })).ok,
      true,
    );
    try {
      const outsider = await (await dr.startSwitchover({})).result().then(() => assert.fail('ran'), failure);
      assert.match(outsider.message, /restore held by restore-kimiclaw-test\/run-1/);
      const child = (await (await dr.startSwitchover({ underLease: parent })).result()) as SwitchoverResult;
      assert.equal(child.epoch, before.epoch + 1);
      assert.equal((await readLease(center, 'kimiclaw'))?.holder, parent, 'the holder keeps its lease');
      const impostor = await (
        await dr.startSwitchover({ underLease: 'restore-kimiclaw-other/run-9' })
      )
        .result()
        .then(() => assert.fail('ran under a lease it does not hold'), failure);
      assert.equal(impostor.type, 'LeaseLost');
    } finally {
      await releaseLease(center, 'kimiclaw', parent);
    }
  });

  void test('a failover takes over a drill’s lease; a switchover does not', async () => {
    const before = await steady();
    const drill = 'drill-kimiclaw-test/run-1';
    assert.equal(
      (await acquireLease(center, 'kimiclaw', { holder: drill, purpose: 'drill', ttlMs: 60_000, preemptible: true }))
        .ok,
      true,
    );
    const switchover = await (await dr.startSwitchover({})).result().then(() => assert.fail('ran'), failure);
    assert.match(switchover.message, /drill held by drill-kimiclaw-test\/run-1/);
    const failover = (await (
      await dr.startFailover({ failedNode: before.node, force: true, reason: 'test: preempt' })
    ).result()) as FailoverResult;
    assert.match(failover.preempted ?? '', /^drill held by drill-kimiclaw-test\/run-1/);
    // The drill learns of it at its next renewal (the lease may have moved on to the rejoin since).
    assert.equal((await renewLease(center, 'kimiclaw', drill, 60_000)).kind, 'lost');
    await h.client.workflow.getHandle(failover.recoverWorkflowId).result();
  });

  void test('a failover needed while recoverNode waits for a dead node is not blocked; nothing acknowledged is lost', async () => {
    const first = await steady();
    const writer = startClusterWriter(center, { token: EVENTS_CREDENTIAL, key: KEY });
    await waitFor('writes', async () => writer.acked.length >= 100);
    await node(first.node).stop('SIGKILL');
    const second = await waitFor('the monitor’s failover', async () => {
      const record = await primaryRecord();
      return record.node !== first.node && (await nodeHealth(node(record.node).url)).role === 'primary' && record;
    });
    const recovering = h.client.workflow.getHandle(`recover-kimiclaw-${first.node}`);
    await steady();
    assert.equal((await recovering.describe()).status.name, 'RUNNING', 'recoverNode waits for the dead node');
    assert.equal(isLive(await readLease(center, 'kimiclaw'), Date.now()), false, 'and holds no lease meanwhile');
    await waitFor('more writes on the new primary', async () => writer.acks.some((a) => a.node === second.node));

    await node(second.node).stop('SIGKILL');
    const third = await waitFor('a second failover', async () => {
      const record = await primaryRecord();
      return record.epoch > second.epoch && (await nodeHealth(node(record.node).url)).role === 'primary' && record;
    });
    assert.equal((await recovering.describe()).status.name, 'RUNNING', 'the first recovery still waits');
    await waitFor('writes on the third primary', async () => writer.acks.some((a) => a.node === third.node));
    await writer.stop();
    const present = await sequencesOn(node(third.node).url, EVENTS_CREDENTIAL);
    assert.deepEqual(
      writer.acked.filter((s) => !present.has(s)),
      [],
      'every acknowledged write is on the last primary',
    );
    await node(first.node).start();
    await node(second.node).start();
    await recovering.result();
    await h.client.workflow.getHandle(`recover-kimiclaw-${second.node}`).result();
    await steady();
  });

  void test('leaving degraded mode: the record names the standby only once it holds every acknowledged write', async () => {
    const record = await steady();
    const standby = (await syncRecord())!.standbys[0]!;
    const primaryUrl = node(record.node).url;
    const flips: Array<{ standbys: string[]; allowDegraded: boolean; standbyLsn: number; ackedBefore: number }> = [];
    const writer = startClusterWriter(center, { token: EVENTS_CREDENTIAL, key: KEY });
    let wasDegraded = false;
    const stopWatch = center.watch(SYNC_KEY, (v) => {
      const sync = v.value as SyncRecord | undefined;
      if (sync?.degraded) wasDegraded = true;
      if (!wasDegraded || !sync || sync.degraded || sync.standbys.length === 0) return;
      // Read right after the flip: every write acknowledged before it must be on the standby.
      const ackedBefore = Math.max(0, ...writer.acks.map((a) => a.lsn));
      void Promise.all([nodeHealth(primaryUrl), nodeHealth(node(standby).url)]).then(([p, s]) =>
        flips.push({
          standbys: sync.standbys,
          allowDegraded: (p as { allowDegraded?: boolean }).allowDegraded ?? true,
          standbyLsn: s.lsn,
          ackedBefore,
        }),
      );
    });
    // Every replica goes: with one left in sync the monitor would make it the standby instead of
    // degrading (test/unit/placement.test.ts).
    const third = h.nodes.find((n) => n.id !== record.node && n.id !== standby)!;
    try {
      await Promise.all([node(standby).stop('SIGKILL'), third.stop('SIGKILL')]);
      await waitFor('the primary to acknowledge alone', async () => (await syncRecord())?.degraded === true);
      const alone = writer.acked.length;
      await waitFor('writes acknowledged alone', async () => writer.acked.length >= alone + 50);
      await node(standby).start();
      await waitFor('the standby recorded again', async () => flips.length > 0);
    } finally {
      stopWatch();
    }
    for (const flip of flips) {
      assert.equal(flip.allowDegraded, false, 'the primary stopped acknowledging alone before the record changed');
      assert.ok(
        flip.standbyLsn >= flip.ackedBefore,
        `standby at LSN ${flip.standbyLsn}, acknowledged ${flip.ackedBefore}`,
      );
    }
    // And the proof holds where it matters: the primary dies, the recorded standby takes over.
    await node(record.node).stop('SIGKILL');
    const next = await waitFor('failover to the standby', async () => {
      const r = await primaryRecord();
      return r.epoch > record.epoch && (await nodeHealth(node(r.node).url)).role === 'primary' && r;
    });
    await waitFor('writes on the new primary', async () => writer.acks.some((a) => a.node === next.node));
    await writer.stop();
    const present = await sequencesOn(node(next.node).url, EVENTS_CREDENTIAL);
    assert.deepEqual(
      writer.acked.filter((s) => !present.has(s)),
      [],
      'no write acknowledged alone was lost',
    );
    await Promise.all([node(record.node).start(), third.start()]);
    await steady();
  });
});

void describe('a refused publish leaves nothing promoted (no monitor)', () => {
  let h: Harness;
  let dr: KimiclawDr;
  let center: ConfigCenter;

  before(async () => {
    h = await Harness.start({ nodes: ['node1', 'node2'], cluster: true });
    dr = await KimiclawDr.connect(h.config);
    center = openConfigCenter(h.config.cluster.configCenter);
  });
  after(async () => {
    h?.nodes[0]?.signal('SIGCONT');
    await center?.close();
    await h?.stop();
  });

  void test('another primary recorded between the fence and the publish: the elected replica stays a replica', async () => {
    const [node1, node2] = h.nodes as [(typeof h.nodes)[0], (typeof h.nodes)[0]];
    await center.compareAndSwap(KEY, '0', { node: 'node1', url: node1.url, epoch: 1, since: new Date().toISOString() });
    await waitFor('node2 in sync', async () => (await nodeHealth(node1.url)).syncState === 'in-sync');
    // A frozen primary, and node2 frozen too for a moment: the election asks node2 again with a
    // long timeout after its quick probe fails, and that is the window to write in.
    node1.signal('SIGSTOP');
    node2.signal('SIGSTOP');
    let competing: PrimaryRecord;
    let handle: WorkflowHandle;
    try {
      handle = await dr.startFailover({ failedNode: 'node1', reason: 'test: refused publish' });
      const fenced = await waitFor('the failover’s epoch bump', async () => {
        const value = (await center.get('/services/kimiclaw/epoch')).value as { epoch: number; by: string } | undefined;
        return value?.by.startsWith('failover-kimiclaw/') && value;
      });
      competing = { node: 'node1', url: node1.url, epoch: fenced.epoch + 1, since: new Date().toISOString() };
      const { revision } = await center.get(KEY);
      assert.equal((await center.compareAndSwap(KEY, revision, competing)).ok, true);
    } finally {
      node2.signal('SIGCONT');
    }

    const refused = await handle
      .result()
      .then(() => assert.fail('the failover published over a newer record'), failure);
    assert.equal(refused.type, 'PublishRefused');
    assert.match(
      refused.message,
      /refused node2 as primary of epoch 2.*node2 was not promoted.*names node1 at epoch 3/,
    );
    const node2Now = await nodeHealth(node2.url);
    assert.equal(node2Now.role, 'replica', 'nothing was promoted');
    assert.equal(node2Now.epoch, 1);
    assert.deepEqual(await recordedPrimary(center), competing);
    assert.equal(isLive(await readLease(center, 'kimiclaw'), Date.now()), false, 'the lease was given back');
  });
});

async function recordedPrimary(center: ConfigCenter) {
  return (await readPrimary(center, KEY)).record;
}
