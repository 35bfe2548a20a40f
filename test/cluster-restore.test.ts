/**
 * Restore, disk damage and data loss on a replicated cluster, against real components (Temporal
 * dev server, versitygw, etcd, two node processes, the monitor and the log archiver), each with a
 * ledger client writing through the primary record: every acknowledged write is kept unless the
 * operator asked to go back in time, and the nodes keep one history (the same fingerprint at the
 * same LSN). The ledger (test/ledger.ts) is the evidence, not the workflows' results.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { syncKey } from '../src/activities/cluster';
import { KimiclawDr } from '../src/client';
import { type ConfigCenter, openConfigCenter, readPrimary } from '../src/config-center';
import { type ClusterWriter, ledgerEventsOn, startClusterWriter } from '../src/dev/cluster-writer';
import { damageBlockInUse } from '../src/dev/damage';
import { NodeClient } from '../src/node-client';
import { Stores } from '../src/storage/stores';
import type { RestoreResult } from '../src/workflows/restore';
import {
  EVENTS_CREDENTIAL,
  Harness,
  NODE_CREDENTIAL,
  archivedThrough as archived,
  failureMessages,
  nodeHealth,
  waitFor,
} from './harness';
import { assertLedgerOnNodes, assertOneEventPerPlace } from './ledger';

const KEY = '/services/kimiclaw/primary';

interface Health {
  status: string;
  role: string;
  epoch: number;
  lsn: number;
  ackedLsn: number;
  replicas: Array<{ id: string; state: string; appliedLsn: number | null }>;
}

const health = async (url: string) => (await nodeHealth(url)) as unknown as Health;

void describe('restore on a replicated cluster (ledger clients, two nodes, monitor and archiver)', () => {
  let h: Harness;
  let dr: KimiclawDr;
  let center: ConfigCenter;
  let stores: Stores;

  const node = (id: string) => h.nodes.find((n) => n.id === id)!;
  const primaryRecord = async () => (await readPrimary(center, KEY)).record!;
  const syncRecord = async () =>
    (await center.get(syncKey('kimiclaw'))).value as
      { epoch: number; standbys: string[]; degraded: boolean } | undefined;
  const client = (id: string) => new NodeClient(id, node(id).url, NODE_CREDENTIAL, 60_000);

  /** Both nodes up, one primary at the recorded epoch, the other in sync, and the same data at the same LSN. */
  async function steady(): Promise<{ primary: string; replica: string; epoch: number }> {
    const record = await waitFor(
      'a steady cluster',
      async () => {
        const r = await primaryRecord();
        const p = await health(node(r.node).url);
        const other = h.nodes.find((n) => n.id !== r.node)!;
        const o = await health(other.url);
        const ok =
          p.status === 'ok' &&
          p.role === 'primary' &&
          o.status === 'ok' &&
          o.role === 'replica' &&
          p.replicas.some((x) => x.id === other.id && x.state === 'in-sync') &&
          (await syncRecord())?.standbys.includes(other.id) === true;
        if (!ok) {
          const link = p.replicas.find((x) => x.id === other.id)?.state ?? 'no link';
          throw new Error(
            `record ${r.node}@${r.epoch}; ${r.node} ${p.status}/${p.role}@${p.epoch}; ${other.id} ${o.status}/${o.role}@${o.epoch} (${link}); ` +
              `sync record ${JSON.stringify(await syncRecord())}`,
          );
        }
        return r;
      },
      120_000,
    );
    const replica = h.nodes.find((n) => n.id !== record.node)!.id;
    await assertSameData(record.node, replica);
    return { primary: record.node, replica, epoch: record.epoch };
  }

  /**
   * The same fingerprint at the same LSN on the primary `a` and the replica `b` (rows, ids, LSN and
   * content checksum), at the primary's acknowledged head: writes may go on meanwhile.
   */
  async function assertSameData(a: string, b: string): Promise<void> {
    const lsn = (await health(node(a).url)).ackedLsn;
    await waitFor(`${b} to reach ${a}'s acknowledged LSN ${lsn}`, async () => {
      const y = await health(node(b).url);
      return y.lsn >= lsn && y.ackedLsn >= lsn;
    });
    const [x, y] = await Promise.all([client(a).stats(lsn), client(b).stats(lsn)]);
    const pick = (s: typeof x) => [s.rows, s.minId, s.maxId, s.maxLsn, s.checksum, s.fingerprintVersion];
    assert.deepEqual(pick(y), pick(x), `${b} holds other data than ${a} at LSN ${lsn}`);
  }

  const archivedThrough = () => archived(stores.s3());

  async function restore(input: Parameters<KimiclawDr['startRestore']>[0]): Promise<RestoreResult> {
    return (await dr.startRestore(input)).result();
  }

  async function writing(at: number): Promise<ClusterWriter> {
    const writer = startClusterWriter(center, { token: EVENTS_CREDENTIAL, key: KEY, pauseMs: 10 });
    await waitFor('writes acknowledged', async () => writer.acked.length >= at);
    return writer;
  }

  before(async () => {
    h = await Harness.start({
      nodes: ['node1', 'node2'],
      cluster: true,
      nodeArgs: ['--scrub-interval', '1s'],
      config: (base) => ({
        ...base,
        archive: { interval: '1s', segmentMaxEvents: 5_000 },
        cluster: { ...base.cluster, lease: { ttl: '5s', failoverWait: '60s' } },
      }),
    });
    dr = await KimiclawDr.connect(h.config);
    center = openConfigCenter(h.config.cluster.configCenter);
    stores = new Stores(h.config);
    await dr.ensureMonitor();
    await dr.ensureLogArchive('kimiclaw');
    await steady();
    const seed = await writing(200);
    await seed.stop();
    await (await dr.startBackup({ tier: 'L2', reason: 'cluster restore tests' })).result();
  });
  after(async () => {
    stores?.destroy();
    await center?.close();
    await h?.stop();
  });

  void test('bad input is refused before anything changes, naming the field', async () => {
    const before = await steady();
    const refusals: Array<[Parameters<KimiclawDr['startRestore']>[0], string, RegExp]> = [
      [{ excludeLsns: [{ fromLsn: 999_999, toLsn: 1_000_000 }] }, 'excludeLsns', /lies beyond LSN \d+/],
      [{ node: 'node9' }, 'node', /"node9" is not a node/],
    ];
    for (const [input, field, message] of refusals) {
      await assert.rejects(restore(input), (err: unknown) => {
        assert.ok(err instanceof WorkflowFailedError);
        assert.equal((err.cause as { type?: string }).type, 'InvalidInput', failureMessages(err));
        assert.match(String(err.cause?.message), new RegExp(`${field}: .*${message.source}`));
        return true;
      });
    }
    // The client refuses what the schema refuses before anything starts.
    await assert.rejects(
      dr.startRestore({
        excludeLsns: [
          { fromLsn: 5, toLsn: 9 },
          { fromLsn: 9, toLsn: 12 },
        ],
      }),
      /overlap/,
    );
    await assert.rejects(dr.startRestore({ excludeLsns: [{ fromLsn: 9, toLsn: 5 }] }), /is empty/);
    await assert.rejects(dr.startRestore({ target: 'scratch', acceptLoss: true }), /acceptLoss: means nothing/);

    // No reachable node can prove the acknowledged head: the standby is gone, the primary is the target.
    await node(before.replica).stop('SIGKILL');
    try {
      await assert.rejects(restore({}), (err: unknown) => {
        assert.match(
          String((err as WorkflowFailedError).cause?.message),
          /acceptLoss: .*cannot be asked what was acknowledged/,
        );
        return true;
      });
    } finally {
      await node(before.replica).start();
    }
    const after = await steady();
    assert.deepEqual([after.primary, after.epoch], [before.primary, before.epoch], 'nothing changed');
  });

  void test('restore {} while the archive trails the acknowledged head: rebuilt from the standby, nothing lost', async () => {
    const before = await steady();
    const writer = await writing(300);
    // The archiver paused: the acknowledged head runs ahead of the archive.
    await h.client.workflow.getHandle('archive-log-kimiclaw').terminate('test: the archive trails');
    const trail = await archivedThrough();
    await waitFor(
      'the head 30 s ahead of the archive',
      async () => {
        const head = (await health(node(before.primary).url)).ackedLsn;
        const last = writer.acks.at(-1);
        return head > trail && last && last.at - writer.acks.find((a) => a.lsn > trail)!.at > 30_000;
      },
      90_000,
    );
    const result = await restore({});
    assert.equal(result.method, 'rebuild');
    assert.equal(result.node, before.primary);
    assert.equal(result.failedOver?.newPrimary, before.replica);
    assert.equal(result.rebuiltFrom, before.replica);
    await waitFor('writes on the new primary', async () => writer.acks.some((a) => a.node === before.replica));
    await writer.stop();
    const after = await steady();
    assert.equal(after.primary, before.replica);
    await assertLedgerOnNodes(writer, h.nodes, EVENTS_CREDENTIAL);
    assertOneEventPerPlace(writer);
    await dr.ensureLogArchive('kimiclaw');
  });

  void test('a primary whose file is damaged: detected, failed over and rebuilt; an operator restore {} loses nothing too', async (t) => {
    const first = await steady();
    const writer = await writing(300);
    const damagedAt = Date.now();
    await damage(node(first.primary).dataDir);
    // The node's scrub finds it (the state lasts until the node is rebuilt: seconds).
    const detected = await waitFor('the primary to report the damage', async () => {
      const p = (await nodeHealth(node(first.primary).url)) as { status?: string; damage?: { at?: string } };
      return p.status === 'damaged' && Date.parse(String(p.damage?.at));
    });
    // The monitor notices (the scrub reads the file from disk), fails over, and rebuilds the node.
    const second = await waitFor(
      'the failover from the damaged primary',
      async () => {
        const r = await primaryRecord();
        if (r.node !== first.primary && r.epoch > first.epoch) return r;
        const p = (await nodeHealth(node(first.primary).url)) as unknown as Record<string, unknown>;
        throw new Error(
          `primary ${first.primary}: ${JSON.stringify({ status: p.status, damage: p.damage, scrub: p.scrub })}`,
        );
      },
      120_000,
    );
    const recovery = h.client.workflow.getHandle(`recover-kimiclaw-${first.primary}`);
    await waitFor('the recovery of the damaged node to start', () =>
      recovery.describe().then(
        () => true,
        () => false,
      ),
    );
    const recovered = await recovery.result();
    const rebuiltAt = Date.now();
    assert.equal((recovered as { rebuilt: boolean }).rebuilt, true, 'the damaged node was rebuilt, not rejoined');
    await waitFor('writes on the new primary', async () => writer.acks.some((a) => a.node === second.node));
    const firstAck = writer.acks.find((a) => a.node === second.node)!.at;
    t.diagnostic(
      `damage → detected ${((detected - damagedAt) / 1000).toFixed(1)} s, ` +
        `→ first write acknowledged by ${second.node} ${((firstAck - damagedAt) / 1000).toFixed(1)} s, ` +
        `→ ${first.primary} rebuilt and in sync ${((rebuiltAt - damagedAt) / 1000).toFixed(1)} s`,
    );
    await steady();

    // The same again, but an operator restores before anything notices.
    await damage(node(second.node).dataDir);
    const result = await restore({});
    assert.equal(result.method, 'rebuild');
    assert.equal(result.node, second.node);
    await steady();

    // And one more SIGKILL of the primary: the promoted node has everything.
    const third = await primaryRecord();
    await node(third.node).stop('SIGKILL');
    await waitFor(
      'the failover after the kill',
      async () => {
        const r = await primaryRecord();
        return r.node !== third.node && (await health(node(r.node).url)).role === 'primary' && r;
      },
      60_000,
    );
    await waitFor('writes after the kill', async () => writer.acks.at(-1)!.epoch > third.epoch);
    await node(third.node).start();
    await writer.stop();
    await steady();
    await assertLedgerOnNodes(writer, h.nodes, EVENTS_CREDENTIAL);
    assertOneEventPerPlace(writer);
  });

  void test('a replica whose file is damaged: the monitor has it rebuilt while the primary serves', async (t) => {
    const first = await steady();
    const writer = await writing(200);
    const damagedAt = Date.now();
    await damage(node(first.replica).dataDir);
    await waitFor(
      'the replica to report the damage',
      async () => (await health(node(first.replica).url)).status === 'damaged',
    );
    const recovery = h.client.workflow.getHandle(`recover-kimiclaw-${first.replica}`);
    await waitFor('the monitor to start its recovery', () =>
      recovery.describe().then(
        (d) => d.startTime.getTime() >= damagedAt - 1_000,
        () => false,
      ),
    );
    const recovered = (await recovery.result()) as { rebuilt: boolean };
    assert.equal(recovered.rebuilt, true, 'the damaged replica was rebuilt, not rejoined');
    t.diagnostic(`damage → replica rebuilt and in sync ${((Date.now() - damagedAt) / 1000).toFixed(1)} s`);
    const seen = writer.acks.length;
    await waitFor('writes go on', async () => writer.acks.length > seen + 20);
    await writer.stop();
    const after = await steady();
    assert.deepEqual([after.primary, after.epoch], [first.primary, first.epoch], 'no failover: the primary was fine');
    assert.ok(writer.acks.every((a) => a.node === first.primary));
    await assertLedgerOnNodes(writer, h.nodes, EVENTS_CREDENTIAL);
    assertOneEventPerPlace(writer);
  });

  void test('back to an LSN behind the replica: a new epoch, the replica follows, nothing abandoned remains', async () => {
    const first = await steady();
    const writer = await writing(200);
    await writer.stop();
    const target = (await health(node(first.primary).url)).ackedLsn;
    const late = await writing(200);
    await late.stop();
    const head = (await health(node(first.primary).url)).ackedLsn;
    assert.ok(head > target);
    await waitFor('the archive to reach the head', async () => (await archivedThrough()) >= head);

    const result = await restore({ toLsn: target });
    assert.equal(result.method, 'backup');
    assert.equal(result.finalLsn, target);
    assert.ok(result.epoch! > first.epoch, 'a new epoch');
    assert.deepEqual(result.discarded, { fromLsn: target + 1, toLsn: head });
    assert.deepEqual(result.followers, [{ node: first.replica, how: 'rejoined' }]);
    await steady();

    // 1,000 more events, then the primary dies: the promoted node holds exactly the restored
    // history and the new writes.
    const after = startClusterWriter(center, { token: EVENTS_CREDENTIAL, key: KEY, batch: 10 });
    await waitFor('1,000 more events', async () => after.acked.length >= 1_000);
    await after.stop();
    const now = await steady();
    const last = await health(node(now.primary).url);
    const before = await client(now.primary).stats(last.lsn);
    await node(now.primary).stop('SIGKILL');
    await waitFor('the failover', async () => (await primaryRecord()).node === now.replica, 60_000);
    const promoted = await client(now.replica).stats(last.lsn);
    assert.deepEqual(
      [promoted.rows, promoted.maxId, promoted.checksum],
      [before.rows, before.maxId, before.checksum],
      'the promoted node holds the old primary’s data exactly',
    );
    await node(now.primary).start();
    await steady();

    const abandoned = new Set(late.acked);
    for (const n of h.nodes) {
      const events = await ledgerEventsOn(n.url, EVENTS_CREDENTIAL);
      assert.equal(events.filter((e) => abandoned.has(e.seq)).length, 0, `${n.id} holds abandoned events`);
    }
    await assertLedgerOnNodes(writer, h.nodes, EVENTS_CREDENTIAL);
    await assertLedgerOnNodes(after, h.nodes, EVENTS_CREDENTIAL);
    // Within each history one batch per LSN; the new one reuses the discarded LSNs, as asked.
    for (const w of [writer, late, after]) assertOneEventPerPlace(w);
    // The archive's live prefix holds the restored history only: no abandoned event in it.
    await waitFor('the archive to follow the new history', async () => (await archivedThrough()) >= target + 100);
    for (const object of await stores.s3().list('kimiclaw/log/')) {
      const body = await stores.s3().getBytes(object.key);
      const { decodeSegment } = await import('../src/archive/segment');
      const events = await decodeSegment(body!.body, object.key, body!.metadata.sha256);
      const seqs = events.map((e) => (JSON.parse(e.payload) as { seq?: number }).seq);
      assert.equal(
        seqs.filter((s) => s !== undefined && abandoned.has(s)).length,
        0,
        `${object.key} holds abandoned events`,
      );
    }
  });

  void test('surgical repair: ten bad batches among good ones are left out; every good write is kept', async () => {
    const first = await steady();
    const writer = await writing(100);
    const bad: number[] = [];
    for (let i = 0; i < 10; i++) {
      const primary = await primaryRecord();
      const res = await fetch(`${primary.url}/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: EVENTS_CREDENTIAL.authorization() },
        body: JSON.stringify({
          events: [
            { kind: 'bad', payload: { bad: i } },
            { kind: 'bad', payload: { bad: i } },
          ],
        }),
      });
      assert.equal(res.status, 200);
      bad.push(((await res.json()) as { lsn: number }).lsn);
      const seen = writer.acked.length;
      await waitFor('good writes between the bad ones', async () => writer.acked.length >= seen + 20);
    }
    await writer.stop();
    const head = (await health(node(first.primary).url)).ackedLsn;
    await waitFor('the archive to reach the head', async () => (await archivedThrough()) >= head);

    const result = await restore({ excludeLsns: bad.map((lsn) => ({ fromLsn: lsn, toLsn: lsn })) });
    assert.equal(result.method, 'backup');
    assert.equal(result.leftOut?.length, 10);
    assert.ok(result.leftOut!.every((r) => r.events === 2));
    assert.equal(result.finalLsn, head, JSON.stringify(result));
    await steady();
    for (const n of h.nodes) {
      const res = await fetch(`${n.url}/events?afterLsn=0&limit=100000`, {
        headers: { authorization: NODE_CREDENTIAL.authorization() },
      });
      const page = (await res.json()) as { events: Array<{ kind: string }> };
      assert.equal(page.events.filter((e) => e.kind === 'bad').length, 0, `${n.id} still holds bad events`);
    }
    await assertLedgerOnNodes(writer, h.nodes, EVENTS_CREDENTIAL);
    // New writes after the repair never take the LSN or id of a batch left out.
    const more = await writing(50);
    await more.stop();
    await steady();
    assert.ok(more.acks.every((a) => a.lsn > head));
    await assertLedgerOnNodes(more, h.nodes, EVENTS_CREDENTIAL);
    assertOneEventPerPlace(writer);
    assertOneEventPerPlace(more);
  });

  void test('both nodes lose their data: nothing is acknowledged until restore {} brings back what was archived', async () => {
    const first = await steady();
    const writer = await writing(300);
    const written = writer.acks.at(-1)!.lsn;
    await waitFor('the archive to catch up', async () => (await archivedThrough()) >= written);
    const archived = await archivedThrough();
    for (const n of h.nodes) {
      await n.stop('SIGKILL');
      await rm(n.dataDir, { recursive: true, force: true });
      n.createIfMissing = false;
    }
    // Taken once both are dead: an answer the primary sent just before its SIGKILL may reach the
    // writer a moment after the kill began, and is a real acknowledgement of a write it held.
    const killedAt = Date.now();
    for (const n of h.nodes) await n.start();
    await waitFor('both nodes wait empty', async () =>
      (await Promise.all(h.nodes.map((n) => health(n.url)))).every((x) => x.status === 'empty'),
    );
    const seen = writer.errors;
    await waitFor('the writer to be refused', async () => writer.errors > seen + 20);
    assert.equal(writer.acks.filter((a) => a.at > killedAt).length, 0, 'an empty node acknowledged a write');

    const result = await restore({});
    assert.equal(result.method, 'backup');
    assert.ok(
      result.finalLsn >= archived,
      `the restore reached LSN ${result.finalLsn}; the archive held ${archived}: ${JSON.stringify(result)}`,
    );
    assert.equal(result.followers?.[0]?.how, 'rebuilt');
    await writer.stop();
    const after = await steady();
    assert.ok(after.epoch > first.epoch);
    const reachedArchive = new Set(writer.acks.filter((a) => a.lsn <= archived).flatMap((a) => a.seqs));
    await assertLedgerOnNodes(writer, h.nodes, EVENTS_CREDENTIAL, { ignore: (seq) => !reachedArchive.has(seq) });
    // The new epoch reuses only the LSNs of writes that never reached the archive (lost with the nodes).
    assertOneEventPerPlace(writer, (lsn) => lsn > archived);
    for (const n of h.nodes) n.createIfMissing = true;
  });
});

/** Overwrites 64 KiB of a block in use in the middle of a node's database file, as a failing disk does. */
async function damage(dataDir: string): Promise<void> {
  await damageBlockInUse(join(dataDir, 'kimiclaw.duckdb'));
}
