/**
 * How the log archive and the write policy behave across cluster events, with real components:
 * the archive keeps tiling the LSNs, with exactly the events the cluster acknowledged, through a
 * failover in which the old primary dies with a committed but unacknowledged batch that the
 * archiver had every chance to read; and under the
 * "block" policy a lost replica holds writes back (never degraded) until it returns.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeSegment, type LogEvent } from '../src/archive/segment';
import { KimiclawDr } from '../src/client';
import { openDatabase } from '../src/duckdb/open';
import { type ConfigCenter, openConfigCenter, readPrimary } from '../src/config-center';
import { sequencesOn, startClusterWriter } from '../src/dev/cluster-writer';
import { parseSegmentKey } from '../src/restore/segments';
import { Stores } from '../src/storage/stores';
import { EVENTS_CREDENTIAL, EVENTS_TOKEN, Harness, monitorProgress, nodeHealth, waitFor } from './harness';

const KEY = '/services/kimiclaw/primary';

/** Every archived event, checking that the segments tile 1..end with no gap and no overlap. */
async function archivedEvents(stores: Stores): Promise<LogEvent[]> {
  const segments = (await stores.s3().list('kimiclaw/log/'))
    .map((o) => ({ key: o.key, range: parseSegmentKey(o.key) }))
    .filter((s) => s.range !== undefined)
    .sort((a, b) => a.range!.startLsn - b.range!.startLsn);
  const events: LogEvent[] = [];
  let next = 1;
  for (const s of segments) {
    assert.equal(s.range!.startLsn, next, `segment ${s.key} starts at ${s.range!.startLsn}, expected ${next}`);
    const object = await stores.s3().getBytes(s.key);
    assert.ok(object, s.key);
    events.push(...(await decodeSegment(object.body, s.key, object.metadata.sha256)));
    next = s.range!.endLsn + 1;
  }
  return events;
}

void describe('the log archive across a failover', () => {
  let h: Harness;
  let dr: KimiclawDr;
  let center: ConfigCenter;
  let stores: Stores;

  before(async () => {
    h = await Harness.start({
      nodes: ['node1', 'node2'],
      cluster: true,
      config: (base) => ({
        ...base,
        archive: { interval: '1s', segmentMaxEvents: 2_000 },
        cluster: { ...base.cluster, degradeAfter: '60s' },
      }),
    });
    dr = await KimiclawDr.connect(h.config);
    center = openConfigCenter(h.config.cluster.configCenter);
    stores = new Stores(h.config);
  });
  after(async () => {
    stores?.destroy();
    await center?.close();
    await h?.stop();
  });

  const archivePasses = async () => {
    const text = await h.worker!.metrics.registry.metrics();
    return Number(/^archive_passes_total\{database="kimiclaw"\} (\d+)/m.exec(text)?.[1] ?? 0);
  };

  void test('no gap, no duplicate, and nothing the new primary does not have', async () => {
    await dr.ensureMonitor();
    await dr.ensureLogArchive('kimiclaw');
    await waitFor('the primary record', async () => (await readPrimary(center, KEY)).record);
    await waitFor('in sync', async () => (await nodeHealth(h.nodes[0]!.url)).syncState === 'in-sync');
    const writer = startClusterWriter(center, { token: EVENTS_CREDENTIAL, key: KEY });
    await waitFor('writes', async () => writer.acked.length >= 300);
    // A committed batch no replica confirms: node2 dies, a write to node1 waits (degradeAfter is
    // long here), the archiver makes passes meanwhile, then node1 dies and node2 comes back.
    await h.nodes[1]!.stop('SIGKILL');
    const rowsBefore = (await nodeHealth(h.nodes[0]!.url)).rows;
    const orphan = fetch(`${h.nodes[0]!.url}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${EVENTS_TOKEN}` },
      body: JSON.stringify({ events: [{ kind: 'orphan', payload: { never: 'acknowledged' } }] }),
    }).catch(() => undefined);
    // Positive evidence that the archiver had every chance to read the waiting batch: the batch
    // is committed on node1 (the writer's batches have 5 events, the orphan 1), and two whole
    // archive passes ran after that.
    await waitFor(
      'the orphan committed',
      async () => ((await nodeHealth(h.nodes[0]!.url)).rows - rowsBefore) % 5 === 1,
    );
    const passes = await archivePasses();
    await waitFor('two archive passes', async () => (await archivePasses()) >= passes + 2);
    await h.nodes[0]!.stop('SIGKILL');
    await orphan;
    await h.nodes[1]!.start();
    await waitFor('failover', async () => (await readPrimary(center, KEY)).record?.node === 'node2');
    await waitFor('writes on node2', async () => writer.acks.filter((a) => a.node === 'node2').length > 30);
    await writer.stop();
    // The batch did commit on the dead primary: the archive is what must leave it out.
    const db = await openDatabase(join(h.nodes[0]!.dataDir, 'kimiclaw.duckdb'));
    try {
      const c = await db.connect();
      const rows = (await c.runAndReadAll(`SELECT count(*)::INTEGER FROM events WHERE kind = 'orphan'`)).getRows();
      c.closeSync();
      assert.equal(rows[0]?.[0], 1, 'the dead primary committed the unacknowledged batch');
    } finally {
      db.close();
    }

    const head = (await nodeHealth(h.nodes[1]!.url)).lsn;
    const events = await waitFor(
      'the archive to reach the new primary',
      async () => {
        const all = await archivedEvents(stores);
        return all.at(-1)?.lsn === head ? all : undefined;
      },
      60_000,
    );
    assert.equal(events.filter((e) => e.kind === 'orphan').length, 0, 'the unacknowledged batch must not be archived');
    const archivedSeqs = new Set(
      events.map((e) => (JSON.parse(e.payload) as { seq?: number }).seq).filter((s) => s !== undefined),
    );
    assert.deepEqual(
      writer.acked.filter((s) => !archivedSeqs.has(s)),
      [],
      'every acknowledged write is archived',
    );
    const onPrimary = await sequencesOn(h.nodes[1]!.url, EVENTS_CREDENTIAL);
    assert.deepEqual(
      [...archivedSeqs].sort((a, b) => a! - b!),
      [...onPrimary].sort((a, b) => a - b),
    );
  });
});

void describe('whenSyncReplicaDown: "block"', () => {
  let h: Harness;
  let dr: KimiclawDr;

  before(async () => {
    h = await Harness.start({
      nodes: ['node1', 'node2'],
      cluster: true,
      config: (base) => ({
        ...base,
        cluster: { ...base.cluster, whenSyncReplicaDown: 'block', degradeAfter: '500ms' },
      }),
    });
    dr = await KimiclawDr.connect(h.config);
  });
  after(async () => {
    await h?.stop();
  });

  void test('a lost replica holds writes back, never degraded, until it is back', async () => {
    await dr.ensureMonitor();
    const primary = h.nodes[0]!;
    await waitFor('in sync', async () => (await nodeHealth(primary.url)).syncState === 'in-sync');
    await h.nodes[1]!.stop('SIGKILL');
    const pending = fetch(`${primary.url}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${EVENTS_TOKEN}` },
      body: JSON.stringify({ events: [{ kind: 'blocked', payload: {} }] }),
    });
    // Positive evidence that the monitor had its chance to degrade: it probed the waiting primary
    // for longer than degradeAfter.
    const start = (await monitorProgress(h.client))?.probes ?? 0;
    const rounds = Math.ceil(h.config.cluster.degradeAfter / h.config.cluster.probeInterval) + 2;
    await waitFor(
      'the monitor to probe past degradeAfter',
      async () => ((await monitorProgress(h.client))?.probes ?? 0) >= start + rounds,
    );
    const early = await Promise.race([pending.then(() => 'answered'), sleep(10).then(() => 'waiting')]);
    assert.equal(early, 'waiting', 'a write was acknowledged without the synchronous replica');
    assert.equal((await nodeHealth(primary.url)).syncState, 'waiting');
    await h.nodes[1]!.start();
    const answer = await pending;
    assert.equal(answer.status, 200);
    assert.equal((await nodeHealth(primary.url)).syncState, 'in-sync');
  });
});
