/**
 * A full disk under the primary of a replicated cluster, against real components (Temporal dev
 * server, versitygw, etcd, two node processes, the monitor): the primary's data directory is a
 * small tmpfs this test mounts (as root), and a ledger client writing through the primary record
 * fills it. The primary turns unwritable, the monitor fails it over within the usual RTO, writes go
 * on on the other node, and no acknowledged event is lost; once space is freed the old primary
 * reopens its file (fenced), rejoins as a replica and holds the same data as the new primary. The
 * ledger (test/ledger.ts) is the evidence, not the workflows' results.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cp, mkdir, readdir, rename, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KimiclawDr } from '../src/client';
import { type ConfigCenter, openConfigCenter } from '../src/config-center';
import { startClusterWriter } from '../src/dev/cluster-writer';
import { failoverWorkflowId, recoverWorkflowId } from '../src/failover/input';
import type { FailoverResult, RecoverNodeResult } from '../src/workflows/cluster';
import { clusterChecks } from './cluster-checks';
import { EVENTS_CREDENTIAL, Harness, type NodeProcess, waitFor } from './harness';
import { assertLedgerOnNodes, assertOneEventPerPlace } from './ledger';

const MIB = 1024 * 1024;
const IS_ROOT = process.getuid?.() === 0;
/** The primary's file system: room for its database and a few thousand more events. */
const TMPFS_SIZE = 16 * MIB;
/** What the filler leaves free: room for a few thousand events, filled within seconds. */
const LEAVE_FREE = MIB / 4;

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

void describe(
  'a full disk under the primary of a cluster (tmpfs, ledger client, monitor)',
  { skip: IS_ROOT ? false : 'mounting a tmpfs needs root' },
  () => {
    let h: Harness;
    let dr: KimiclawDr;
    let center: ConfigCenter;
    let checks: ReturnType<typeof clusterChecks>;
    let mounted: string | undefined;

    /**
     * The node's data directory moved onto a fresh tmpfs at the same path: stopped cleanly (its file
     * checkpointed), its files copied onto the mount, started again (same port, same URL).
     */
    async function moveOntoTmpfs(node: NodeProcess): Promise<void> {
      await node.stop('SIGTERM');
      const held = `${node.dataDir}.before-tmpfs`;
      await rename(node.dataDir, held);
      await mkdir(node.dataDir);
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_SIZE}`, 'tmpfs', node.dataDir]);
      mounted = node.dataDir;
      await cp(held, node.dataDir, { recursive: true });
      await rm(held, { recursive: true, force: true });
      await node.start();
    }

    before(async () => {
      h = await Harness.start({
        nodes: ['node1', 'node2'],
        cluster: true,
        nodeArgs: ['--reopen-interval', '500ms'],
      });
      dr = await KimiclawDr.connect(h.config);
      center = openConfigCenter(h.config.cluster.configCenter);
      checks = clusterChecks(h, center);
      await moveOntoTmpfs(h.nodes[0]!);
      await dr.ensureMonitor();
    });
    after(async () => {
      await center?.close();
      if (mounted) {
        await h.nodes[0]?.stop('SIGKILL');
        execFileSync('umount', ['-l', mounted]);
      }
      await h?.stop();
    });

    void test('the primary’s disk fills: failed over, nothing acknowledged lost; space freed: the old primary rejoins in sync', async () => {
      const first = await checks.steady();
      assert.equal(first.primary, 'node1', 'the primary is the node on the tmpfs');
      const old = checks.node(first.primary);
      const writer = startClusterWriter(center, { token: EVENTS_CREDENTIAL, batch: 20, pauseMs: 10 });
      try {
        await waitFor('writes acknowledged by the primary', async () => writer.acked.length >= 500);

        // Most of the file system taken by something else: the ledger client's writes fill the rest.
        const fs = await statfs(old.dataDir);
        const files = await readdir(old.dataDir);
        const sizes = files.map(async (f) => `${f} ${(await stat(join(old.dataDir, f)).catch(() => undefined))?.size}`);
        const used = await Promise.all(sizes);
        const free = fs.bavail * fs.bsize;
        console.log(`tmpfs ${TMPFS_SIZE} bytes, ${free} free; files: ${used.join(', ')}`);
        const filler = join(old.dataDir, 'filler');
        const fillingAt = Date.now();
        const ackedBefore = writer.acked.length;
        await writeFile(filler, Buffer.alloc(free - LEAVE_FREE, 1));

        const full = await waitFor(
          `${old.id} to report itself unwritable`,
          async () => {
            const x = await checks.health(old.id);
            return x.status === 'unwritable' ? x : undefined;
          },
          180_000,
        );
        const fullAt = Date.parse(full.damage!.at);
        assert.match(full.damage!.reason, /No space left on device|ENOSPC/, 'the node names the full disk');
        assert.ok(writer.acked.length > ackedBefore, 'the ledger client’s writes filled the disk');
        console.log(
          `disk full ${seconds(fullAt - fillingAt)} after the filler (${writer.acked.length - ackedBefore} events ` +
            `acknowledged meanwhile): ${full.damage!.reason} (${full.damage!.detectedBy})`,
        );

        const record = await waitFor(
          'the failover away from the full primary',
          async () => {
            const r = await checks.primaryRecord();
            return r.node !== first.primary && r.epoch > first.epoch ? r : undefined;
          },
          60_000,
        );
        const firstAck = await waitFor(
          `a write acknowledged by the new primary ${record.node}`,
          async () => writer.acks.find((a) => a.node === record.node && a.epoch >= record.epoch),
          60_000,
        );
        const failover = (await h.client.workflow.getHandle(failoverWorkflowId('kimiclaw')).result()) as FailoverResult;
        assert.equal(failover.failedNode, first.primary);
        assert.equal(failover.newPrimary, record.node);
        console.log(
          `failover: disk full → first write acknowledged by ${record.node} ${seconds(firstAck.at - fullAt)}; ` +
            `the failover's RTO ${failover.rtoSeconds} s, phases ${JSON.stringify(failover.phases)}`,
        );
        assert.ok(firstAck.at - fullAt < 60_000, 'writes resumed within a minute of the disk filling');

        // Writes go on on the new primary while the old one stays full: it cannot come back.
        const onNew = writer.acked.length;
        await waitFor('more writes on the new primary', async () => writer.acked.length >= onNew + 500);
        const stillFull = await checks.health(old.id);
        assert.equal(stillFull.status, 'unwritable', `${old.id} while its disk is full`);
        assert.equal(stillFull.writable, false);

        await rm(filler);
        const freedAt = Date.now();
        const recovered = (await h.client.workflow
          .getHandle(recoverWorkflowId('kimiclaw', old.id))
          .result()) as RecoverNodeResult;
        assert.deepEqual(
          [recovered.role, recovered.rebuilt],
          ['replica', false],
          `${old.id} rejoined (not rebuilt): ${JSON.stringify(recovered)}`,
        );
        const back = await checks.steady();
        const inSyncAt = Date.now();
        assert.deepEqual([back.primary, back.replica], [record.node, old.id]);
        console.log(
          `space freed → ${old.id} a replica in sync (same data at the acknowledged head) ${seconds(inSyncAt - freedAt)}`,
        );

        const more = writer.acked.length;
        await waitFor('writes with the old primary as the replica', async () => writer.acked.length >= more + 200);
      } finally {
        await writer.stop();
      }
      const last = await checks.steady();
      await assertLedgerOnNodes(writer, h.nodes, EVENTS_CREDENTIAL);
      assertOneEventPerPlace(writer);
      const by = (id: string) => writer.acks.filter((a) => a.node === id).reduce((n, a) => n + a.seqs.length, 0);
      console.log(
        `ledger: ${writer.acked.length} events acknowledged (${first.primary} ${by(first.primary)}, ${last.primary} ${by(last.primary)}), ` +
          `0 lost, duplicated or changed on ${h.nodes.map((n) => n.id).join(' and ')}`,
      );
    });
  },
);
