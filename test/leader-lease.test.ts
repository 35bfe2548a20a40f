/**
 * The primary's leadership lease on real processes: a1 (primary) and a2 (its synchronous replica)
 * in region A, b1 (asynchronous) in region B; etcd members a, b, c. When region A is cut off from
 * the majority (members b and c frozen, and b1 with them) a1 still reaches its synchronous replica
 * and, without the lease, would go on acknowledging beside whatever region B makes primary. With it,
 * a1 stops acknowledging before the lease it last wrote expires. When etcd alone is down and a1
 * still reaches every replica, the failsafe keeps writes flowing.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type ConfigCenter, EtcdCenter, casPrimary } from '../src/config-center';
import { type ClusterWriter, startClusterWriter } from '../src/dev/cluster-writer';
import { type EtcdCluster, startEtcdCluster } from '../src/dev/etcd';
import { freePort } from '../src/net';
import { NodeClient } from '../src/node-client';
import { EVENTS_CREDENTIAL, NODE_CREDENTIAL, type NodeProcess, nodeHealth, testNode, waitFor } from './harness';
import { assertLedgerOnNodes } from './ledger';

const KEY = '/services/kimiclaw/primary';
const TTL_MS = 3_000;

interface LeaseHealth {
  open: boolean;
  holds: boolean;
  failsafe: boolean;
  validUntil?: string;
  lastRenewal?: string;
}

void describe('leadership lease', { timeout: 5 * 60_000 }, () => {
  let dir: string;
  let etcd: EtcdCluster;
  let center: ConfigCenter;
  let nodes: NodeProcess[];
  const lease = async (url: string) =>
    ((await nodeHealth(url)) as unknown as { leaderLease?: LeaseHealth }).leaderLease;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kimiclaw-lease-'));
    etcd = await startEtcdCluster({ names: ['a', 'b', 'c'], root: join(dir, 'etcd') });
    center = new EtcdCenter({ endpoints: etcd.endpoints, timeoutMs: 500 });
    const ids = ['a1', 'a2', 'b1'];
    const ports = await Promise.all(ids.map(() => freePort()));
    const url = (i: number) => `http://127.0.0.1:${ports[i]}`;
    nodes = ids.map((id, i) => testNode(id, join(dir, 'nodes'), 'kimiclaw', ports[i]));
    const leaseArgs = ['--leader-etcd', etcd.endpoints.join(','), '--leader-ttl', `${TTL_MS}ms`];
    nodes[0]!.args = [
      '--role',
      'primary',
      '--replica',
      `a2=${url(1)},sync`,
      '--replica',
      `b1=${url(2)},async`,
      ...leaseArgs,
    ];
    nodes[1]!.args = ['--role', 'replica', ...leaseArgs];
    nodes[2]!.args = ['--role', 'replica', ...leaseArgs];
    for (const n of [nodes[1]!, nodes[2]!, nodes[0]!]) await n.start();
    const recorded = await casPrimary(
      center,
      undefined,
      { node: 'a1', url: url(0), epoch: 1, since: new Date().toISOString() },
      KEY,
    );
    assert.ok(recorded.ok);
  });

  after(async () => {
    await center?.close();
    await Promise.all((nodes ?? []).map((n) => n.stop('SIGKILL')));
    await etcd?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /**
   * Every node has the primary's acknowledged head (replicas learn it with the next message), and
   * the same data there: rows, id range and content fingerprint at that LSN.
   */
  async function caughtUp(): Promise<void> {
    const head = ((await nodeHealth(nodes[0]!.url)) as unknown as { ackedLsn: number }).ackedLsn;
    for (const n of nodes) {
      await waitFor(`${n.id} to know LSN ${head} acknowledged`, async () => {
        const h = (await nodeHealth(n.url)) as unknown as { ackedLsn: number };
        return h.ackedLsn >= head;
      });
    }
    const stats = (n: NodeProcess) => new NodeClient(n.id, n.url, NODE_CREDENTIAL, 60_000).stats(head);
    const pick = (x: Awaited<ReturnType<typeof stats>>) => [x.rows, x.minId, x.maxId, x.maxLsn, x.checksum];
    const primary = pick(await stats(nodes[0]!));
    for (const n of nodes.slice(1)) {
      assert.deepEqual(pick(await stats(n)), primary, `${n.id} holds other data than a1 at LSN ${head}`);
    }
  }

  async function flowing(writer: ClusterWriter, more = 50): Promise<void> {
    const from = writer.acks.length;
    await waitFor(`${more} more acknowledged writes`, async () => writer.acks.length >= from + more);
  }

  void test('a primary cut off from the config center majority stops acknowledging before its lease expires', async () => {
    await waitFor('a1 holds the lease', async () => (await lease(nodes[0]!.url))?.holds === true);
    const writer = startClusterWriter(center, { token: EVENTS_CREDENTIAL, key: KEY, requestTimeoutMs: 2_000 });
    await flowing(writer, 200);
    // Region B, as region A sees it: etcd members b and c and node b1 answer nothing.
    etcd.members[1]!.freeze();
    etcd.members[2]!.freeze();
    nodes[2]!.signal('SIGSTOP');
    try {
      const frozenAt = Date.now();
      // Positive evidence first: the lease ran out and a1 says it may not acknowledge.
      const closed = await waitFor(
        'a1 to close its lease',
        async () => {
          const l = await lease(nodes[0]!.url);
          return l && !l.open ? l : false;
        },
        TTL_MS * 4,
      );
      assert.equal(closed.failsafe, false, 'b1 does not answer: no failsafe');
      const validUntil = Date.parse(closed.validUntil!);
      assert.ok(validUntil <= frozenAt + TTL_MS, 'the lease was last renewed before region B was cut off');
      // Then a write sent now is not acknowledged (it waits, and the writer gives up on it).
      const errorsBefore = writer.errors;
      await waitFor('a write to time out', async () => writer.errors > errorsBefore, 10_000);
      const late = writer.acks.filter((a) => a.at > validUntil + 250);
      assert.deepEqual(
        late.map((a) => `${a.lsn}@${new Date(a.at).toISOString()}`),
        [],
        `acknowledged after the lease ran out (${new Date(validUntil).toISOString()})`,
      );
    } finally {
      etcd.members[1]!.thaw();
      etcd.members[2]!.thaw();
      nodes[2]!.signal('SIGCONT');
    }
    await waitFor('a1 holds the lease again', async () => (await lease(nodes[0]!.url))?.holds === true);
    await flowing(writer);
    await writer.stop();
    await caughtUp();
    await assertLedgerOnNodes(writer, nodes, EVENTS_CREDENTIAL);
  });

  void test('the whole config center down, every replica reachable: the failsafe keeps writes flowing', async () => {
    const writer = startClusterWriter(center, { token: EVENTS_CREDENTIAL, key: KEY, requestTimeoutMs: 2_000 });
    await flowing(writer);
    for (const m of etcd.members) m.freeze();
    const frozenAt = Date.now();
    try {
      const failsafe = await waitFor(
        'a1 past its lease, in failsafe',
        async () => {
          const l = await lease(nodes[0]!.url);
          return l && !l.holds && l.failsafe && l.open ? l : false;
        },
        TTL_MS * 4,
      );
      const validUntil = Date.parse(failsafe.validUntil!);
      assert.ok(validUntil <= frozenAt + TTL_MS);
      await waitFor('writes acknowledged after the lease ran out', async () =>
        writer.acks.some((a) => a.at > validUntil + 1_000),
      );
    } finally {
      for (const m of etcd.members) m.thaw();
    }
    await waitFor('a1 holds the lease again', async () => (await lease(nodes[0]!.url))?.holds === true);
    await writer.stop();
    await caughtUp();
    await assertLedgerOnNodes(writer, nodes, EVENTS_CREDENTIAL);
  });
});
