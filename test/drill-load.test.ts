/**
 * A drill's evidence (src/drill): the write load runs as a process of its own and appends every
 * acknowledgement to a ledger file; the ledger outlives the load process (SIGKILL), a restarted
 * load continues it, and the recovery is measured from it and from what the nodes hold: RTO from
 * the fault to the first acknowledgement after it, RPO from acknowledged events missing.
 */
import assert from 'node:assert/strict';
import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KimiclawDr } from '../src/client';
import { type ConfigCenter, openConfigCenter } from '../src/config-center';
import { ledgerEventsOn } from '../src/dev/cluster-writer';
import { readLedger } from '../src/drill/ledger-file';
import { startLoad, stopLoad } from '../src/drill/load';
import { measureRecovery } from '../src/drill/measure';
import type { FailoverResult } from '../src/workflows/cluster';
import { EVENTS_CREDENTIAL, Harness, nodeHealth, waitFor } from './harness';

const KEY = '/services/kimiclaw/primary';

void describe('drill write load and ledger (real node processes, real failover)', () => {
  let h: Harness;
  let center: ConfigCenter;
  let dr: KimiclawDr;
  /** Load processes started here: detached, so a failed assertion must not leave them running. */
  const started: number[] = [];

  before(async () => {
    h = await Harness.start({ nodes: ['node1', 'node2'], cluster: true });
    center = openConfigCenter(h.config.cluster.configCenter);
    dr = await KimiclawDr.connect(h.config);
  });
  after(async () => {
    for (const pid of started) await stopLoad(pid);
    await center?.close();
    await h?.stop();
  });

  void test('the ledger survives the load process and measures a failover: RTO, RPO 0, nothing changed', async () => {
    const primary = h.nodes[0]!;
    await center.compareAndSwap(KEY, '0', {
      node: 'node1',
      url: primary.url,
      epoch: 1,
      since: new Date().toISOString(),
    });
    await waitFor('replica in sync', async () => (await nodeHealth(primary.url)).syncState === 'in-sync');
    const options = {
      dir: join(h.dir, 'drill'),
      spec: { configCenter: h.config.cluster.configCenter, key: KEY },
      token: EVENTS_CREDENTIAL,
    };
    const load = await startLoad(options);
    started.push(load.pid);
    const { ledger } = load;
    await waitFor('acknowledgements in the ledger', async () => (await readLedger(ledger)).length >= 40);

    const faultAt = Date.now();
    await primary.stop('SIGKILL');
    const failover = (await (
      await dr.startFailover({ failedNode: 'node1', reason: 'test: drill load' })
    ).result()) as FailoverResult;
    assert.equal(failover.newPrimary, 'node2');
    await waitFor(
      'acknowledgements by node2',
      async () => (await readLedger(ledger)).filter((a) => a.node === 'node2').length >= 20,
    );
    // Killed without warning: whatever it had acknowledged is in the file, in whole lines.
    process.kill(load.pid, 'SIGKILL');
    await stopLoad(load.pid);
    await appendFile(ledger, '{"at":1,"node":"torn');
    const acks = await readLedger(ledger);
    assert.ok(acks.length >= 60, `${acks.length} acknowledgements`);

    // A restarted load continues the ledger with new sequence numbers, and stops when asked.
    const again = await startLoad(options);
    started.push(again.pid);
    await waitFor('more acknowledgements', async () => (await readLedger(ledger)).length >= acks.length + 20);
    await stopLoad(again.pid);
    const all = await readLedger(ledger);
    const seqs = all.flatMap((a) => a.seqs);
    assert.equal(new Set(seqs).size, seqs.length, 'a sequence number was used twice');

    const held = { node2: await ledgerEventsOn(h.nodes[1]!.url, EVENTS_CREDENTIAL) };
    const measured = measureRecovery(all, faultAt, held);
    assert.equal(measured.firstAck?.node, 'node2');
    assert.ok(
      measured.rtoMs !== undefined && measured.rtoMs > 0 && measured.rtoMs < 120_000,
      `RTO ${measured.rtoMs} ms`,
    );
    assert.deepEqual(measured.rpo, { events: 0, spanMs: 0 });
    assert.deepEqual(measured.nodes.node2, { lost: 0, duplicated: 0, changed: 0 });
    assert.equal(measured.acknowledged, seqs.length);
    console.log(
      `drill load: ${all.length} acknowledgements; RTO ${measured.rtoMs} ms (first by ${measured.firstAck?.node} at epoch ${measured.firstAck?.epoch}); RPO ${measured.rpo.events} events`,
    );

    // The same measurement fails when the events are not there: it counts them, and their age span.
    const none = measureRecovery(all, faultAt, { node2: [] });
    assert.equal(none.rpo.events, seqs.length);
    assert.equal(none.rpo.spanMs, Math.max(...all.map((a) => a.at)) - Math.min(...all.map((a) => a.at)));
    const excluded = new Set(all[0]!.seqs);
    const shifted = held.node2.map((e) => (excluded.has(e.seq) ? { ...e, lsn: e.lsn + 1000 } : e));
    const changed = measureRecovery(all, faultAt, { node2: shifted });
    assert.equal(changed.nodes.node2!.changed, excluded.size);
    assert.equal(measureRecovery(all, faultAt, { node2: shifted }, (s) => excluded.has(s)).nodes.node2!.changed, 0);
  });
});
