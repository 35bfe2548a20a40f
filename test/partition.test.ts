/**
 * A real network partition, made with a Linux network namespace (src/dev/netns.ts). Region A —
 * nodes a1 (primary, leadership lease with a 3 s TTL) and a2 (its synchronous replica), etcd member
 * a, and a client of region A — runs in its own namespace, joined to the root namespace by a veth
 * pair; region B — etcd members b and c and node b1 (a1's asynchronous replica) — runs in the root
 * namespace, and so does the cluster writer, which follows the primary record. Setting the link
 * down cuts region A off while every process keeps running: the region-A client still reaches
 * a1 and a1 still reaches a2, but nothing of region A reaches the etcd majority or b1.
 *
 * Asserted from the writers' own ledgers (docs/architecture.md, rule 12):
 * - Patroni's rule: after the cut a1 goes on acknowledging the region-A client inside its lease,
 *   says it is closed (no failsafe) and stops at the lease's validUntil (read from a1's /health
 *   just before the cut and checked against the lease record the etcd majority holds): no write
 *   sent from then on is acknowledged, and the last answer reaches the client before validUntil
 *   (allowing ANSWER_MS for an answer on its way back) and long before the lease's `until`;
 * - the takeover a region failover will do (wait for the lease's `until`, bump the primary record
 *   by CAS to epoch 2 naming b1, promote b1) overlaps nothing: b1's first acknowledgement comes
 *   after a1's last;
 * - healed, a1 learns of epoch 2 (it fences itself) and acknowledges nothing more;
 * - every write b1 acknowledged is on b1; the writes a1 acknowledged that b1 lacks (stranded: b1
 *   was asynchronous) are exactly those past the LSN b1 was promoted at, every write a1
 *   acknowledged after the cut among them.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { type ConfigCenter, EtcdCenter, casPrimary } from '../src/config-center';
import { type ClusterWriter, ledgerEventsOn, startClusterWriter } from '../src/dev/cluster-writer';
import { type EtcdCluster, type EtcdPlacement, startEtcdCluster } from '../src/dev/etcd';
import { type Netns, createNetns, netnsUnavailable } from '../src/dev/netns';
import { freePort } from '../src/net';
import { NodeClient } from '../src/node-client';
import type { LeaderRecord, LeaseView } from '../src/node/leader-lease';
import { teeToLog } from './credentials';
import {
  EVENTS_CREDENTIAL,
  EVENTS_TOKEN,
  NODE_CREDENTIAL,
  type NodeProcess,
  REPO,
  eventually,
  nodeHealth,
  testNode,
  waitFor,
} from './harness';
import { assertLedgerOnNodes, checkEvents } from './ledger';
import type { RegionClientLine } from './region-client';

const KEY = '/services/kimiclaw/primary';
const LEADER_KEY = '/services/kimiclaw/leader';
const TTL_MS = 3_000;
/** The region-A client's sequence numbers start here, far above the cluster writer's. */
const REGION_CLIENT_FIRST_SEQ = 100_000_000;
/** How long the answer to an acknowledged write may take to reach the region-A client. */
const ANSWER_MS = 100;

type Ack = ClusterWriter['acks'][number] & { sentAt?: number };

const unavailable = netnsUnavailable();
// As root (CI runs so) namespaces must work: a failure there is a failure, never a quiet skip.
if (unavailable && (process.env.CI || process.getuid?.() === 0))
  throw new Error(`the partition test needs network namespaces: ${unavailable}`);
if (unavailable) console.warn(`\n*** SKIPPED partition test: ${unavailable} ***\n`);

const iso = (ms: number): string => new Date(ms).toISOString();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** A ledger of acknowledgements shaped like a writer's, for the checks of test/ledger.ts. */
const ledgerOf = (acks: Ack[]): ClusterWriter => ({ acked: [], acks, errors: 0, stop: async () => undefined });

interface RegionClient {
  /** Acknowledgements, shaped as the cluster writer's (node a1, the epoch it was given). */
  acks: Ack[];
  /** Writes that were refused or timed out. */
  failures: RegionClientLine[];
  /** The node's GET /health answers (its lease and acknowledged LSN, seen from inside region A). */
  healths: RegionClientLine[];
  stop(): Promise<void>;
}

/** test/region-client.ts inside `ns`, writing to `url` with `epoch` (its events token in its env). */
function startRegionClient(ns: Netns, node: string, url: string, epoch: number): RegionClient {
  const [command, ...args] = [
    ...ns.exec,
    process.execPath,
    ...['--import', 'tsx', join(REPO, 'test', 'region-client.ts')],
    ...['--url', url, '--epoch', String(epoch), '--first-seq', String(REGION_CLIENT_FIRST_SEQ)],
    ...['--health-every-ms', '100'],
  ];
  const child = spawn(command!, args, {
    cwd: REPO,
    env: { ...process.env, KIMICLAW_TEST_EVENTS_TOKEN: EVENTS_TOKEN },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  teeToLog([child.stdout, child.stderr], 'region-client');
  const client: RegionClient = { acks: [], failures: [], healths: [], stop: async () => undefined };
  createInterface({ input: child.stdout }).on('line', (text) => {
    const line = JSON.parse(text) as RegionClientLine;
    if (line.kind === 'health') client.healths.push(line);
    else if (line.ack) client.acks.push({ at: line.at, sentAt: line.sentAt, node, epoch, ...line.ack });
    else client.failures.push(line);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  client.stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.stdin.end();
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(killer);
  };
  return client;
}

void describe(
  'a real network partition: region A cut off by its link',
  { skip: unavailable, timeout: 3 * 60_000 },
  () => {
    let dir: string | undefined;
    let regionA: Netns | undefined;
    let etcd: EtcdCluster | undefined;
    let center: ConfigCenter | undefined;
    let nodes: NodeProcess[] = [];
    let writer: ClusterWriter | undefined;
    let client: RegionClient | undefined;
    const lease = async (url: string) =>
      ((await nodeHealth(url)) as unknown as { leaderLease?: LeaseView }).leaderLease;

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'kimiclaw-partition-'));
      regionA = await createNetns({ name: `kimiclaw-region-a-${randomBytes(3).toString('hex')}` });
      const inA: EtcdPlacement = { host: regionA.address, wrapper: regionA.exec };
      const inB: EtcdPlacement = { host: regionA.hostAddress };
      etcd = await startEtcdCluster({
        names: ['a', 'b', 'c'],
        root: join(dir, 'etcd'),
        placement: { a: inA, b: inB, c: inB },
      });
      center = new EtcdCenter({ endpoints: etcd.endpoints, timeoutMs: 500 });
      const ids = ['a1', 'a2', 'b1'];
      const places = [inA, inA, inB];
      const ports = await Promise.all(ids.map(() => freePort()));
      const url = (i: number) => `http://${places[i]!.host}:${ports[i]}`;
      nodes = ids.map((id, i) => {
        const node = testNode(id, join(dir!, 'nodes'), 'kimiclaw', ports[i]);
        node.host = places[i]!.host!;
        node.wrapper = places[i]!.wrapper ?? [];
        return node;
      });
      const leaseArgs = ['--leader-etcd', etcd.endpoints.join(','), '--leader-ttl', `${TTL_MS}ms`];
      nodes[0]!.args = [
        ...['--role', 'primary', '--replica', `a2=${url(1)},sync`, '--replica', `b1=${url(2)},async`],
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

    // Everything this test made goes, whatever failed: each step runs even if one before it threw.
    after(async () => {
      const steps: Array<() => Promise<unknown> | undefined> = [
        () => client?.stop(),
        () => writer?.stop(),
        () => center?.close(),
        () => Promise.all(nodes.map((n) => n.stop('SIGKILL'))),
        () => etcd?.stop(),
        () => regionA?.remove(),
        () => (dir ? rm(dir, { recursive: true, force: true }) : undefined),
      ];
      const errors: unknown[] = [];
      for (const step of steps) {
        try {
          await step();
        } catch (err) {
          errors.push(err);
        }
      }
      if (errors.length > 0) throw new AggregateError(errors, 'cleaning up after the partition test');
    });

    void test('cut off from the majority, a1 stops inside its lease; b1 takes over after it; nothing overlaps', async (t) => {
      const [a1, a2, b1] = nodes as [NodeProcess, NodeProcess, NodeProcess];
      await waitFor('a1 holds the lease', async () => (await lease(a1.url))?.holds === true);
      writer = startClusterWriter(center!, { token: EVENTS_CREDENTIAL, key: KEY, requestTimeoutMs: 2_000, pauseMs: 5 });
      client = startRegionClient(regionA!, 'a1', a1.url, 1);
      const w = writer;
      const c = client;
      const a1Acks = (): Ack[] => [...w.acks.filter((a) => a.node === 'a1'), ...c.acks];
      const lastOf = (acks: Ack[]): Ack => acks.reduce((x, y) => (y.at > x.at ? y : x));
      await waitFor('writes acknowledged to both clients', async () => w.acks.length >= 100 && c.acks.length >= 50);
      await waitFor('b1 in sync with a1', async () =>
        (await nodeHealth(a1.url)).replicas.some((r) => r.id === 'b1' && r.state === 'in-sync'),
      );

      // Cut right after a renewal, so that none can complete between reading the lease and the cut
      // (the next one starts ttl/3 = 1 s later).
      const seen = (await lease(a1.url))?.lastRenewal;
      let view: LeaseView | undefined;
      for (const deadline = Date.now() + 5_000; Date.now() < deadline; await sleep(10)) {
        const l = await lease(a1.url);
        if (l?.holds && l.lastRenewal && l.lastRenewal !== seen) {
          view = l;
          break;
        }
      }
      assert.ok(view?.validUntil && view.lastRenewal, 'a1 renewed its lease');
      await regionA!.partition();
      const cutAt = Date.now();
      const validUntil = Date.parse(view.validUntil);
      const lastRenewal = Date.parse(view.lastRenewal);
      const guardMs = lastRenewal + view.ttlMs - validUntil;
      assert.ok(cutAt < validUntil, `cut at ${iso(cutAt)}, inside the lease (validUntil ${iso(validUntil)})`);

      // The lease the etcd majority holds is the one a1 showed: no renewal got through after it.
      const record = await eventually(
        async () => (await center!.get(LEADER_KEY)).value as LeaderRecord | undefined,
        'the leader record from the etcd majority',
        10_000,
      );
      const until = Date.parse(record.until);
      assert.deepEqual(
        { node: record.node, epoch: record.epoch, until: record.until },
        { node: 'a1', epoch: 1, until: iso(lastRenewal + view.ttlMs) },
        'the etcd majority holds the lease a1 reported before the cut',
      );

      // The takeover of a region failover, as soon as it may: once the lease's until has passed,
      // record b1 at epoch 2 (CAS on epoch 1) and promote it. Its epoch starts at its LSN: what a1
      // had shipped to it before the cut.
      await sleep(until - Date.now() + 1);
      const takeoverAt = Date.now();
      const cas = await eventually(
        () => casPrimary(center!, 1, { node: 'b1', url: b1.url, epoch: 2, since: iso(takeoverAt) }, KEY),
        'the primary record to move to b1',
        10_000,
      );
      assert.ok(cas.ok, `casPrimary: ${cas.ok ? '' : cas.reason}`);
      const promoted = await new NodeClient('b1', b1.url, NODE_CREDENTIAL, 5_000).promote({
        epoch: 2,
        replicas: [],
        allowDegraded: false,
      });
      const promotedAt = Date.now();
      const forkLsn = promoted.lsn;
      await waitFor('b1 to acknowledge writes', async () => w.acks.filter((a) => a.node === 'b1').length >= 50, 20_000);
      // Positive evidence that a1 stopped, from inside region A: a1 said its lease was closed
      // (no failsafe: b1 is silent) before the lease's until, and a write the region-A client sent
      // after validUntil got no acknowledgement, though the client reached a1 after the cut.
      await waitFor(
        'a write sent to a1 after validUntil to go unacknowledged',
        async () => c.failures.some((f) => f.sentAt >= validUntil),
        15_000,
      );
      const closed = c.healths.find((h) => h.health?.lease?.open === false);
      assert.ok(closed?.health?.lease, 'a1 reported its lease closed to the region-A client');
      assert.equal(closed.health.lease.failsafe, false);
      assert.equal(closed.health.lease.validUntil, view.validUntil, 'the lease a1 showed before the cut');
      assert.ok(
        closed.at < until,
        `a1 said it was closed (${iso(closed.at)}) before the lease's until (${iso(until)})`,
      );
      const ackedAfterCut = c.acks.filter((a) => a.sentAt! > cutAt);
      assert.ok(ackedAfterCut.length > 0, 'a1 acknowledged the region-A client after the cut, inside its lease');
      assert.equal(
        w.acks.filter((a) => a.node === 'a1' && a.at > cutAt).length,
        0,
        'the cluster writer (region B) got nothing from a1 after the cut',
      );
      assert.deepEqual(
        c.acks.filter((a) => a.sentAt! >= validUntil).map((a) => `${a.lsn}@${iso(a.at)}`),
        [],
        `no write sent from validUntil (${iso(validUntil)}) on was acknowledged`,
      );
      const lastA1 = lastOf(a1Acks());
      // The answer to a write a1 acknowledged just before validUntil is still on its way back then:
      // it may arrive a moment later (ANSWER_MS), never anywhere near the lease's until.
      assert.ok(
        lastA1.at < validUntil + ANSWER_MS && lastA1.at < until,
        `a1's last acknowledgement (LSN ${lastA1.lsn}, sent ${iso(lastA1.sentAt ?? lastA1.at)}, answered ${iso(lastA1.at)}) before validUntil ${iso(validUntil)} (+${ANSWER_MS} ms for the answer) and the lease's until ${iso(until)}`,
      );
      // No overlap: b1 acknowledged nothing before a1's last acknowledgement.
      const firstB1 = w.acks.find((a) => a.node === 'b1')!;
      assert.ok(
        firstB1.at > lastA1.at && firstB1.at > until,
        `b1's first acknowledgement (${iso(firstB1.at)}) after a1's last (${iso(lastA1.at)}) and the lease's until (${iso(until)})`,
      );

      // Healed: a1 hears of epoch 2 (b1 refuses its epoch) and fences itself; the region-A client,
      // still writing to it at epoch 1, is refused.
      await regionA!.heal();
      const healedAt = Date.now();
      const fenced = await waitFor(
        'a1 to fence itself on hearing of epoch 2',
        async () => {
          const h = await nodeHealth(a1.url);
          return h.role === 'fenced' ? h : false;
        },
        20_000,
      );
      const fencedAt = Date.now();
      assert.ok(fenced.epoch >= 2, `a1 fenced at epoch ${fenced.epoch}`);
      await waitFor(
        'the region-A client to be refused after the heal',
        async () => c.failures.some((f) => f.sentAt > fencedAt && f.status !== undefined),
        15_000,
      );
      await w.stop();
      await c.stop();
      assert.equal(lastOf(a1Acks()), lastA1, 'a1 acknowledged nothing after the takeover or the heal');

      // The ledger. Every write b1 acknowledged is on b1 where b1 said.
      const b1Acks = w.acks.filter((a) => a.node === 'b1');
      await assertLedgerOnNodes(ledgerOf(b1Acks), [b1], EVENTS_CREDENTIAL);
      // What a1 acknowledged that b1 lacks is stranded (b1 was asynchronous): exactly the
      // acknowledgements past the LSN b1 was promoted at; all before it are on b1 where a1 said.
      const onB1 = await ledgerEventsOn(b1.url, EVENTS_CREDENTIAL);
      const held = new Set(onB1.map((e) => e.seq));
      const ascending = (x: number, y: number) => x - y;
      const stranded = a1Acks()
        .flatMap((a) => a.seqs)
        .filter((seq) => !held.has(seq))
        .sort(ascending);
      const expected = a1Acks()
        .filter((a) => a.lsn > forkLsn)
        .flatMap((a) => a.seqs)
        .sort(ascending);
      assert.deepEqual(stranded, expected, `the writes a1 acknowledged past LSN ${forkLsn} are the ones b1 lacks`);
      const strandedSet = new Set(stranded);
      const upToFork = checkEvents(ledgerOf(a1Acks()), onB1, { ignore: (seq) => strandedSet.has(seq) });
      assert.deepEqual(
        { lost: upToFork.lost.length, duplicated: upToFork.duplicated.length, changed: upToFork.changed.length },
        { lost: 0, duplicated: 0, changed: 0 },
        `b1 holds a1's acknowledged writes up to LSN ${forkLsn} as acknowledged: ${JSON.stringify(upToFork).slice(0, 300)}`,
      );
      assert.ok(
        ackedAfterCut.flatMap((a) => a.seqs).every((seq) => strandedSet.has(seq)),
        'every write a1 acknowledged after the cut is stranded (b1 could not have it)',
      );
      assert.ok(stranded.length > 0, 'writes were stranded');

      // Measured, not asserted: how much of the stranded tail a1 and a2 serve on GET /events (up to
      // the acknowledged LSN each knows).
      const served = async (url: string) => {
        const seqs = new Set((await ledgerEventsOn(url, EVENTS_CREDENTIAL)).map((e) => e.seq));
        return stranded.filter((seq) => seqs.has(seq)).length;
      };
      const closedHealths = c.healths.filter((h) => h.health?.lease?.open === false);
      const numbers = {
        guardMs,
        cutBeforeValidUntilMs: validUntil - cutAt,
        regionClientBatchesAckedAfterCut: ackedAfterCut.length,
        lastA1AckAnsweredBeforeValidUntilMs: validUntil - lastA1.at,
        lastA1AckSentBeforeValidUntilMs: validUntil - (lastA1.sentAt ?? lastA1.at),
        lastA1AckBeforeUntilMs: until - lastA1.at,
        a1SaidClosedAfterValidUntilMs: closed.at - validUntil,
        takeoverAfterUntilMs: takeoverAt - until,
        b1FirstAckAfterA1LastMs: firstB1.at - lastA1.at,
        b1FirstAckAfterPromotionMs: firstB1.at - promotedAt,
        fencedAfterHealMs: fencedAt - healedAt,
        forkLsn,
        lastA1AckLsn: Math.max(...a1Acks().map((a) => a.lsn)),
        a1AckedLsnWhileClosed: closedHealths.at(-1)?.health?.ackedLsn,
        a1AcknowledgedWrites: a1Acks().reduce((n, a) => n + a.seqs.length, 0),
        strandedWrites: stranded.length,
        strandedBatches: a1Acks().filter((a) => a.lsn > forkLsn).length,
        strandedServedByA1: await served(a1.url),
        strandedServedByA2: await served(a2.url),
        b1AcknowledgedWrites: b1Acks.reduce((n, a) => n + a.seqs.length, 0),
      };
      t.diagnostic(`partition numbers: ${JSON.stringify(numbers)}`);
    });
  },
);
