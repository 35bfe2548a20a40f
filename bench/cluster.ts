/**
 * bench:restore's cluster cases, on a two-node cluster (bench/env.ts startClusterBenchEnv) with the
 * monitor and the log archiver running and a ledger client (src/dev/cluster-writer.ts) writing
 * through the primary record all along:
 *
 *   scrub  (run with (c), before the monitor starts) what the scrub costs: CPU s/GiB of its check,
 *          and the write latency at the node's normal load (100-event batches every 100 ms) with the
 *          scrub off, then on (both nodes restarted with it), in the same run;
 *   (c)    64 KiB in the middle of the primary's file overwritten: damage → detected (the node's
 *          damage.at) → failover recorded → first write acknowledged by the new primary → the
 *          damaged node rebuilt and in sync again (the recover workflow done, and the new primary's
 *          link to it in-sync after a bootstrap); the ledger must show 0 acknowledged events lost;
 *   (d)    restore { toLsn } (an LSN some seconds behind the head) through the typed client: the
 *          workflow's RTO and duration, and until the replica is in sync again; the ledger keeps
 *          every acknowledged event up to toLsn and after the restore, and none of those between.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { readPrimary } from '../src/config-center';
import type { ClusterWriter } from '../src/dev/cluster-writer';
import { ledgerEventsOn, startClusterWriter } from '../src/dev/cluster-writer';
import { damageBlockInUse } from '../src/dev/damage';
import { recoverWorkflowId } from '../src/failover/input';
import { scrubFile, staticSubject } from '../src/node/scrubber';
import { parseSegmentKey } from '../src/restore/segments';
import { Stores } from '../src/storage/stores';
import type { FailoverResult, RecoverNodeResult } from '../src/workflows/cluster';
import { checkEvents } from '../test/ledger';
import { type ClusterBenchEnv, log, startClusterBenchEnv } from './env';
import { activityDurations, median, medianSteps } from './history';
import { cpuSeconds, formatLatency, latencies, summarize } from './load';

const KEY = '/services/kimiclaw/primary';
const GIB = 1024 ** 3;
const MIB = 1024 ** 2;

export interface ClusterCaseOptions {
  size: string;
  dir: string;
  rounds: number;
  damaged: boolean;
  pointInTime: boolean;
  /** The nodes' --scrub-interval and --scrub-budget-mibps. */
  scrubInterval: string;
  scrubBudgetMibps: string;
  /** Each scrub-off / scrub-on latency window; 0 skips the scrub's cost. */
  scrubWindowMs: number;
  /** (d): how long the writer goes on after the LSN restored to is taken. */
  behindMs: number;
}

interface Health {
  status: string;
  role: string;
  epoch: number;
  lsn: number;
  ackedLsn: number;
  syncState: string;
  damage?: { reason: string; detectedBy: string; at: string };
  scrub?: { lastRunAt: string | null; nextAt: string | null; bytesChecked: number; lastDurationMs: number | null };
  replicas: Array<{ id: string; state: string; appliedLsn: number | null; bootstraps: number }>;
}

async function health(url: string): Promise<Health> {
  const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) });
  return (await res.json()) as Health;
}

/** Polls until fn gives something other than undefined/false; the last error goes into the timeout. */
async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await fn();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      last = err;
    }
    await sleep(200);
  }
  throw new Error(
    `timed out after ${timeoutMs / 1000} s waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`,
  );
}

const s = (ms: number | undefined) => (ms === undefined ? '—' : `${(ms / 1000).toFixed(1)} s`);

interface LedgerSummary {
  acked: number;
  lost: number;
  duplicated: number;
  changed: number;
  /** Events that should be gone (discarded on purpose) but a node still holds. */
  leftBehind: number;
  text: string;
}

/** Which acknowledgements the lost seqs came from: LSN, epoch, node and time of each batch. */
function lostBatches(writer: ClusterWriter, lost: number[]): string {
  const set = new Set(lost);
  const acks = writer.acks.filter((a) => a.seqs.some((seq) => set.has(seq)));
  return (
    acks
      .slice(0, 5)
      .map((a) => `LSN ${a.lsn} epoch ${a.epoch} by ${a.node} at ${new Date(a.at).toISOString()}`)
      .join('; ') + (acks.length > 5 ? `; … ${acks.length} batches` : '')
  );
}

/** The ledger on every node: acknowledged events lost, duplicated, changed (test/ledger.ts checkEvents). */
async function ledger(
  env: ClusterBenchEnv,
  writer: ClusterWriter,
  discarded = new Set<number>(),
): Promise<LedgerSummary> {
  const out: LedgerSummary = {
    acked: writer.acked.length,
    lost: 0,
    duplicated: 0,
    changed: 0,
    leftBehind: 0,
    text: '',
  };
  const per: string[] = [];
  // Every node at the primary's acknowledged head first: a replica serves events up to the
  // acknowledged LSN it was told, which trails its own LSN by a heartbeat.
  const r = (await readPrimary(env.center, KEY)).record!;
  const head = (await health(r.url)).ackedLsn;
  await waitFor(
    `every node at acknowledged LSN ${head}`,
    async () =>
      (await Promise.all(env.nodes.map((n) => health(n.url)))).every((h) => h.lsn >= head && h.ackedLsn >= head),
    120_000,
  );
  for (const node of env.nodes) {
    const events = await ledgerEventsOn(node.url, env.control, env.seedLsn);
    const check = checkEvents(writer, events, { ignore: (seq) => discarded.has(seq) });
    const leftBehind = events.filter((e) => discarded.has(e.seq)).length;
    out.lost = Math.max(out.lost, check.lost.length);
    out.duplicated = Math.max(out.duplicated, check.duplicated.length);
    out.changed = Math.max(out.changed, check.changed.length);
    out.leftBehind = Math.max(out.leftBehind, leftBehind);
    if (check.lost.length) {
      // Evidence: what each node holds around the first lost batch's LSN.
      const lsn = writer.acks.find((a) => a.seqs.includes(check.lost[0]!))!.lsn;
      for (const wait of [0, 5_000]) {
        await sleep(wait);
        for (const n of env.nodes) {
          const h = await health(n.url);
          const around = (await ledgerEventsOn(n.url, env.control, lsn - 3)).filter((e) => e.lsn <= lsn + 2);
          log(
            `    ${n.id} (${h.role}@${h.epoch}, lsn ${h.lsn}, ackedLsn ${h.ackedLsn}${wait ? `, ${wait / 1000} s later` : ''}) ` +
              `events (lsn:id:seq) around LSN ${lsn}: ${around.map((e) => `${e.lsn}:${e.id}:${e.seq}`).join(' ') || 'none'}`,
          );
        }
      }
    }
    per.push(
      `${node.id}: lost ${check.lost.length}, duplicated ${check.duplicated.length}, changed ${check.changed.length}` +
        (discarded.size ? `, discarded still held ${leftBehind}` : '') +
        (check.lost.length ? ` (${lostBatches(writer, check.lost)})` : ''),
    );
  }
  out.text = per.join('; ');
  return out;
}

/** Both nodes up, one primary at the recorded epoch, the other in sync and named in the sync record. */
async function steady(env: ClusterBenchEnv): Promise<{ primary: string; replica: string; epoch: number }> {
  const node = (id: string) => env.nodes.find((n) => n.id === id)!;
  return waitFor(
    'a steady cluster',
    async () => {
      const r = (await readPrimary(env.center, KEY)).record;
      if (!r) throw new Error('no primary record yet');
      const other = env.nodes.find((n) => n.id !== r.node)!;
      const [p, o] = await Promise.all([health(node(r.node).url), health(other.url)]);
      const sync = (await env.center.get('/services/kimiclaw/sync')).value as { standbys?: string[] } | undefined;
      const link = p.replicas.find((x) => x.id === other.id);
      const ok =
        p.status === 'ok' &&
        p.role === 'primary' &&
        o.status === 'ok' &&
        o.role === 'replica' &&
        link?.state === 'in-sync' &&
        sync?.standbys?.includes(other.id) === true;
      if (!ok) {
        throw new Error(
          `record ${r.node}@${r.epoch}; ${r.node} ${p.status}/${p.role}@${p.epoch}; ${other.id} ${o.status}/${o.role}@${o.epoch} ` +
            `(${link?.state ?? 'no link'}); sync record ${JSON.stringify(sync)}`,
        );
      }
      return { primary: r.node, replica: other.id, epoch: r.epoch };
    },
    15 * 60_000,
  );
}

function startWriter(env: ClusterBenchEnv): ClusterWriter {
  return startClusterWriter(env.center, { token: env.events, key: KEY, pauseMs: 10 });
}

async function writing(env: ClusterBenchEnv, batches: number): Promise<ClusterWriter> {
  const writer = startWriter(env);
  await waitFor('writes acknowledged', async () => writer.acks.length >= batches, 120_000);
  return writer;
}

/** The scrub's cost: its check's CPU per GiB, and write latency with it off, then on. */
async function scrubCost(env: ClusterBenchEnv, opts: ClusterCaseOptions, scrubArgs: string[]): Promise<string[]> {
  const [primary, replica] = env.nodes as [ClusterBenchEnv['nodes'][0], ClusterBenchEnv['nodes'][0]];
  // The node's check (src/node/scrubber.ts) on the seed, in this process, unthrottled.
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const outcome = await scrubFile(staticSubject(env.seedPath), 0);
  const used = process.cpuUsage(cpu0);
  const checkCpu = (used.user + used.system) / 1e6;
  const checkWall = (performance.now() - t0) / 1000;
  if (outcome.kind !== 'ok') throw new Error(`the seed did not scrub clean: ${JSON.stringify(outcome)}`);
  const perGib = checkCpu / (outcome.bytesChecked / GIB);
  log(
    `  scrub: its check ${perGib.toFixed(2)} CPU s/GiB, ${(outcome.bytesChecked / MIB / checkWall).toFixed(0)} MiB/s unthrottled ` +
      `(${(outcome.bytesChecked / MIB).toFixed(0)} MiB in use, ${checkWall.toFixed(1)} s)`,
  );

  const nodesCpu = async () => (await cpuSeconds(primary.pid!)).own + (await cpuSeconds(replica.pid!)).own;
  const inSync = () =>
    waitFor('the replica in sync', async () => (await health(primary.url)).syncState === 'in-sync', 120_000);

  await inSync();
  const off0 = await nodesCpu();
  const off = await latencies(primary.url, env.events, opts.scrubWindowMs);
  const offCpu = (await nodesCpu()) - off0;
  log(`  scrub off: write latency ${formatLatency(off)}; both nodes ${offCpu.toFixed(1)} CPU s`);

  await env.restartNodes(scrubArgs);
  await inSync();
  // Which samples fall in a pass: either node's scrub has no next pass scheduled while one runs.
  let scrubbing = false;
  let polling = true;
  const passes = new Map<string, number>();
  const poll = (async () => {
    while (polling) {
      try {
        const hs = await Promise.all([health(primary.url), health(replica.url)]);
        scrubbing = hs.some((h) => h.scrub && h.scrub.nextAt === null);
        hs.forEach((h, i) => {
          if (h.scrub?.lastRunAt) passes.set(`${i}:${h.scrub.lastRunAt}`, h.scrub.bytesChecked);
        });
      } catch {
        // a health call that timed out says nothing about the scrub
      }
      await sleep(200);
    }
  })();
  const on0 = await nodesCpu();
  const on = await latencies(primary.url, env.events, opts.scrubWindowMs, undefined, () => scrubbing);
  const onCpu = (await nodesCpu()) - on0;
  polling = false;
  await poll;
  const during = summarize(on.samples.filter((x) => x.tagged).map((x) => x.ms));
  const outside = summarize(on.samples.filter((x) => !x.tagged).map((x) => x.ms));
  const scrubbed = [...passes.values()].reduce((a, b) => a + b, 0);
  log(
    `  scrub on (${opts.scrubInterval}, ${opts.scrubBudgetMibps} MiB/s): write latency ${formatLatency(on)}; both nodes ${onCpu.toFixed(1)} CPU s, ` +
      `${passes.size} passes finished (${(scrubbed / MIB).toFixed(0)} MiB checked)`,
  );
  log(`  scrub on, batches sent while a pass ran (${during.n} of ${on.n}): ${formatLatency(during)}`);
  log(`  scrub on, batches sent between passes (${outside.n} of ${on.n}): ${formatLatency(outside)}`);
  const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}×` : '—');
  return [
    `scrub cost: interval ${opts.scrubInterval}, budget ${opts.scrubBudgetMibps} MiB/s; check ${perGib.toFixed(2)} CPU s/GiB (unthrottled, in-process); ` +
      `both nodes +${(onCpu - offCpu).toFixed(1)} CPU s over ${opts.scrubWindowMs / 1000} s with it on ` +
      `(${scrubbed > 0 ? `${((onCpu - offCpu) / (scrubbed / GIB)).toFixed(2)} s per GiB scrubbed, writes included` : 'no pass finished'})`,
    `scrub write latency (100 events / 100 ms, sync replica): off p50 ${off.p50.toFixed(1)} / p99 ${off.p99.toFixed(1)} ms; ` +
      `on p50 ${on.p50.toFixed(1)} / p99 ${on.p99.toFixed(1)} ms (ratio p50 ${ratio(on.p50, off.p50)}, p99 ${ratio(on.p99, off.p99)}); ` +
      `during a pass (${during.n} of ${on.n} batches) p50 ${during.p50.toFixed(1)} / p99 ${during.p99.toFixed(1)} ms ` +
      `(ratio p50 ${ratio(during.p50, off.p50)}, p99 ${ratio(during.p99, off.p99)}); ` +
      `between passes p50 ${outside.p50.toFixed(1)} / p99 ${outside.p99.toFixed(1)} ms (during/between p50 ${ratio(during.p50, outside.p50)}, p99 ${ratio(during.p99, outside.p99)})`,
  ];
}

interface Run {
  workflowId: string;
  runId: string;
  status: string;
  start: number;
  close?: number;
  /** Why a run that did not complete ended. */
  failure?: string;
}

/** The runs of a workflow type started at or after `since` (ms), oldest first. */
async function runsOf(env: ClusterBenchEnv, type: string, since = 0): Promise<Run[]> {
  const runs: Run[] = [];
  for await (const wf of env.client.workflow.list({ query: `WorkflowType = '${type}'` })) {
    if (wf.startTime.getTime() < since) continue;
    const run: Run = {
      workflowId: wf.workflowId,
      runId: wf.runId,
      status: wf.status.name,
      start: wf.startTime.getTime(),
      close: wf.closeTime?.getTime(),
    };
    if (run.status !== 'COMPLETED' && run.status !== 'RUNNING') {
      run.failure = await env.client.workflow
        .getHandle(wf.workflowId, wf.runId)
        .result()
        .then(
          () => undefined,
          (err: unknown) => {
            const cause = (err as { cause?: { message?: string } }).cause;
            return String(cause?.message ?? (err as Error).message);
          },
        );
    }
    runs.push(run);
  }
  return runs.sort((a, b) => a.start - b.start);
}

interface DamageRound {
  detected?: number;
  failover?: number;
  firstWrite?: number;
  recovered?: number;
  inSync?: number;
  /** No write acknowledged: the old primary's last acknowledgement → the new primary's first. */
  failoverPause?: number;
  /** The longest pause between acknowledgements after that (the rebuild's snapshot stalls writes). */
  rebuildPause?: number;
}

/** (c) One round: damage the primary's file while the writer writes; every step timed from the damage. */
async function damagedPrimary(env: ClusterBenchEnv, round: number): Promise<{ marks: DamageRound; lost: number }> {
  const node = (id: string) => env.nodes.find((n) => n.id === id)!;
  const first = await steady(env);
  const writer = await writing(env, 300);
  const old = node(first.primary);
  const t0 = Date.now();
  const damage = await damageBlockInUse(`${old.dataDir}/kimiclaw.duckdb`);
  const marks: DamageRound = {};
  let how = '';
  let newPrimary: { node: string; url: string; epoch: number } | undefined;
  let recovered: RecoverNodeResult | undefined;
  let recoverStatus = '';
  const recovery = env.client.workflow.getHandle(recoverWorkflowId('kimiclaw', old.id));
  const deadline = t0 + 20 * 60_000;
  let last = '';
  while (
    marks.detected === undefined ||
    marks.failover === undefined ||
    marks.firstWrite === undefined ||
    marks.recovered === undefined ||
    marks.inSync === undefined
  ) {
    if (Date.now() > deadline) {
      throw new Error(`(c) round ${round}: timed out after 20 min: ${JSON.stringify(marks)}; last seen ${last}`);
    }
    try {
      if (marks.detected === undefined) {
        const h = await health(old.url);
        last = `${old.id} ${h.status}, scrub ${JSON.stringify(h.scrub)}`;
        if (h.status === 'damaged' && h.damage) {
          marks.detected = Date.parse(h.damage.at) - t0;
          const pass = h.scrub?.lastDurationMs;
          how =
            `${h.damage.detectedBy}: ${h.damage.reason.slice(0, 120)}` +
            (pass ? `; found ${(pass / 1000).toFixed(1)} s into its pass` : '');
        }
      }
      if (marks.failover === undefined) {
        const r = (await readPrimary(env.center, KEY)).record;
        if (r && r.node !== old.id && r.epoch > first.epoch) {
          marks.failover = Date.now() - t0;
          newPrimary = r;
        }
      }
      if (marks.firstWrite === undefined) {
        const ack = writer.acks.find((a) => a.at > t0 && a.node !== old.id);
        if (ack) marks.firstWrite = ack.at - t0;
      }
      if (newPrimary && marks.inSync === undefined) {
        const h = await health(newPrimary.url);
        const link = h.replicas.find((x) => x.id === old.id);
        last = `${newPrimary.node}'s link to ${old.id}: ${JSON.stringify(link)}`;
        if (link?.state === 'in-sync' && link.bootstraps >= 1) marks.inSync = Date.now() - t0;
      }
      if (newPrimary && marks.recovered === undefined) {
        const d = await recovery.describe().catch(() => undefined);
        if (d && d.startTime.getTime() >= t0 && d.status.name !== 'RUNNING') {
          recoverStatus = d.status.name;
          marks.recovered = (d.closeTime?.getTime() ?? Date.now()) - t0;
          if (recoverStatus === 'COMPLETED') recovered = (await recovery.result()) as RecoverNodeResult;
        }
      }
    } catch (err) {
      last = `error: ${(err as Error).message}`;
    }
    await sleep(100);
  }
  // The failover that moved the primary: the completed run started after the damage.
  const moved = (await runsOf(env, 'failover', t0)).find((r) => r.status === 'COMPLETED');
  const failover = moved
    ? ((await env.client.workflow.getHandle(moved.workflowId, moved.runId).result()) as FailoverResult)
    : undefined;
  const byDamaged = writer.acks.filter((a) => a.at > t0 && a.node === old.id);
  await sleep(2_000);
  await writer.stop();
  const firstNew = writer.acks.findIndex((a) => a.at > t0 && a.node !== old.id);
  const lastOld = writer.acks.filter((a) => a.node === old.id).at(-1);
  if (lastOld) marks.failoverPause = writer.acks[firstNew]!.at - lastOld.at;
  let pauseAt = 0;
  marks.rebuildPause = 0;
  for (let i = firstNew + 1; i < writer.acks.length; i++) {
    const gap = writer.acks[i]!.at - writer.acks[i - 1]!.at;
    if (gap > marks.rebuildPause) [marks.rebuildPause, pauseAt] = [gap, writer.acks[i - 1]!.at - t0];
  }
  await steady(env);
  const check = await ledger(env, writer);
  log(
    `  (c) round ${round}: ${old.id}'s block ${damage.blockId} (64 KiB) overwritten at ${new Date(t0).toISOString()} → detected ${s(marks.detected)} (${how}), ` +
      `failover recorded ${s(marks.failover)} (→ ${newPrimary?.node} epoch ${newPrimary?.epoch}; ` +
      (failover
        ? `workflow RTO ${failover.rtoSeconds.toFixed(1)} s, ${Object.entries(failover.phases)
            .map(([k, v]) => `${k} ${(Number(v) / 1000).toFixed(2)}`)
            .join(', ')}`
        : 'no completed failover run found') +
      `), first write on the new primary ${s(marks.firstWrite)}, ` +
      `recover workflow ${recoverStatus} ${s(marks.recovered)} (rebuilt: ${recovered?.rebuilt}), in sync after a bootstrap ${s(marks.inSync)}`,
  );
  log(
    `  (c) round ${round}: no write acknowledged for ${s(marks.failoverPause)} at the failover (${old.id}'s last → ${newPrimary?.node}'s first); ` +
      `longest pause afterwards ${s(marks.rebuildPause)} (from ${s(pauseAt)} after the damage)`,
  );
  log(
    `  (c) round ${round}: ledger ${check.acked.toLocaleString('en-US')} acknowledged events (${byDamaged.length} batches acknowledged by ${old.id} after the damage): ${check.text}`,
  );
  return { marks, lost: check.lost + check.changed + check.duplicated };
}

/** (d) One round: restore { toLsn } while the writer writes; the workflow and the replica timed. */
async function pointInTime(
  env: ClusterBenchEnv,
  stores: Stores,
  round: number,
  behindMs: number,
): Promise<{
  wall: number;
  rto: number;
  inSync: number;
  firstWrite?: number;
  steps: Record<string, number>;
  bad: number;
}> {
  const node = (id: string) => env.nodes.find((n) => n.id === id)!;
  const first = await steady(env);
  const writer = await writing(env, 300);
  const target = (await health(node(first.primary).url)).ackedLsn;
  await sleep(behindMs);
  const head = (await health(node(first.primary).url)).ackedLsn;
  // Not timed: the archive (10 s interval) holds the LSN asked for, as an operator would check.
  await waitFor(
    `the archive to reach LSN ${target}`,
    async () => {
      const ends = (await stores.s3().list('kimiclaw/log/')).map((o) => parseSegmentKey(o.key)?.endLsn ?? 0);
      const through = Math.max(0, ...ends);
      if (through < target) throw new Error(`archived through ${through}`);
      return true;
    },
    5 * 60_000,
  );
  const t0 = Date.now();
  const handle = await env.dr.startRestore({ toLsn: target });
  const result = await handle.result();
  const wall = Date.now() - t0;
  const inSync = await waitFor(
    'the replica in sync after the restore',
    async () => {
      const r = (await readPrimary(env.center, KEY)).record;
      if (!r) return undefined;
      const other = env.nodes.find((n) => n.id !== r.node)!;
      const p = await health(node(r.node).url);
      const link = p.replicas.find((x) => x.id === other.id);
      return p.role === 'primary' && link?.state === 'in-sync' && (link.appliedLsn ?? -1) >= p.lsn && Date.now() - t0;
    },
    15 * 60_000,
  );
  const steps = await activityDurations(handle);
  const firstNew = writer.acks.find((a) => a.at > t0 && a.epoch > first.epoch);
  const lastOld = writer.acks.filter((a) => a.epoch <= first.epoch).at(-1);
  await sleep(2_000);
  await writer.stop();
  await steady(env);
  const discarded = new Set(writer.acks.filter((a) => a.epoch <= first.epoch && a.lsn > target).flatMap((a) => a.seqs));
  const check = await ledger(env, writer, discarded);
  log(
    `  (d) round ${round}: restore { toLsn: ${target} } (head ${head}, ${(behindMs / 1000).toFixed(0)} s of writes behind it) → ` +
      `${result.method} from ${result.backupId}, ${result.segmentsReplayed} segments, final LSN ${result.finalLsn}, epoch ${first.epoch} → ${result.epoch}, ` +
      `discarded ${JSON.stringify(result.discarded)}, followers ${JSON.stringify(result.followers)}; ` +
      `workflow ${s(wall)}, RTO ${result.rtoSeconds.toFixed(1)} s, replica in sync ${s(inSync)} after the start; ` +
      `writes refused ${lastOld && firstNew ? s(firstNew.at - lastOld.at) : '—'} (first write of the new epoch ${s(firstNew ? firstNew.at - t0 : undefined)} after the start)`,
  );
  log(`  (d) round ${round}: steps ${medianSteps([steps])}`);
  log(
    `  (d) round ${round}: ledger ${check.acked.toLocaleString('en-US')} acknowledged events, ${discarded.size} of them after LSN ${target} (discarded as asked): ${check.text}`,
  );
  return {
    wall,
    rto: result.rtoSeconds * 1000,
    inSync,
    firstWrite: firstNew ? firstNew.at - t0 : undefined,
    steps,
    bad: check.lost + check.changed + check.duplicated + check.leftBehind,
  };
}

/** Runs the cluster cases asked for; the summary lines, and whether an acknowledged write was lost. */
export async function runClusterCases(opts: ClusterCaseOptions): Promise<{ summary: string[]; failed: boolean }> {
  const scrubArgs = ['--scrub-interval', opts.scrubInterval, '--scrub-budget-mibps', opts.scrubBudgetMibps];
  const measureScrub = opts.damaged && opts.scrubWindowMs > 0;
  const env = await startClusterBenchEnv({
    dir: opts.dir,
    size: opts.size,
    nodeArgs: measureScrub ? ['--scrub-interval', '0'] : scrubArgs,
  });
  const stores = new Stores(env.config);
  const summary: string[] = [];
  let failed = false;
  try {
    if (measureScrub) summary.push(...(await scrubCost(env, opts, scrubArgs)));
    await env.dr.ensureMonitor();
    await steady(env);
    const seed = await writing(env, 50);
    await seed.stop();
    // The first backup, then the archiver: an empty archive starts at the newest backup (started
    // first, it would seal the whole generated history from LSN 0 before anything newer).
    const b0 = Date.now();
    const backup = await (await env.dr.startBackup({ tier: 'L2', reason: 'bench:restore cluster' })).result();
    log(
      `  cluster: L2 backup ${backup.backupId} of ${(backup.bytesBefore / 1e6).toFixed(0)} MB in ${s(Date.now() - b0)} (for (d))`,
    );
    await env.dr.ensureLogArchive('kimiclaw');
    const rounds = `${opts.rounds} round${opts.rounds === 1 ? '' : 's'} at ${opts.size} (--cluster-rounds; each takes minutes)`;

    if (opts.damaged) {
      const results: Array<{ marks: DamageRound; lost: number }> = [];
      for (let round = 1; round <= opts.rounds; round++) results.push(await damagedPrimary(env, round));
      const m = (k: keyof DamageRound) => s(median(results.map((r) => r.marks[k] ?? NaN)));
      const lost = Math.max(...results.map((r) => r.lost));
      failed ||= lost > 0;
      summary.push(
        `(c) damaged primary → rebuilt, median of ${rounds}, from the damage: detected ${m('detected')} (scrub every ${opts.scrubInterval} at ${opts.scrubBudgetMibps} MiB/s), ` +
          `failover recorded ${m('failover')}, first write acknowledged by the new primary ${m('firstWrite')}, ` +
          `recover workflow done ${m('recovered')}, damaged node in sync again ${m('inSync')}`,
        `(c) writes paused ${m('failoverPause')} at the failover (the old primary's last acknowledgement → the new one's first); ` +
          `longest pause while the node was rebuilt ${m('rebuildPause')}`,
        `(c) acknowledged events lost, duplicated or changed: ${lost} (must be 0)`,
      );
    }
    if (opts.pointInTime) {
      const results = [];
      for (let round = 1; round <= opts.rounds; round++) {
        results.push(await pointInTime(env, stores, round, opts.behindMs));
      }
      const bad = Math.max(...results.map((r) => r.bad));
      failed ||= bad > 0;
      summary.push(
        `(d) point-in-time restore { toLsn } of the cluster, median of ${rounds}: workflow ${s(median(results.map((r) => r.wall)))}, ` +
          `RTO ${s(median(results.map((r) => r.rto)))}, replica in sync ${s(median(results.map((r) => r.inSync)))} after the start, ` +
          `first write of the new epoch ${s(median(results.map((r) => r.firstWrite ?? NaN)))} after the start`,
        `(d) steps (median): ${medianSteps(results.map((r) => r.steps))}`,
        `(d) acknowledged events up to toLsn or after the restore lost, duplicated or changed, or discarded ones still held: ${bad} (must be 0)`,
      );
    }
    // Every failover, recovery and restore the run saw, and why those that failed did.
    const counts: string[] = [];
    for (const type of ['failover', 'recoverNode', 'restore']) {
      const runs = await runsOf(env, type);
      const by = new Map<string, number>();
      for (const r of runs) by.set(r.status, (by.get(r.status) ?? 0) + 1);
      counts.push(`${type} ${[...by].map(([k, v]) => `${v} ${k.toLowerCase()}`).join(', ') || 'none'}`);
      for (const r of runs.filter((x) => x.failure !== undefined)) {
        const line = `${r.workflowId} ${r.status.toLowerCase()} (started ${new Date(r.start).toISOString()}): ${r.failure}`;
        log(`  cluster: ${line}`);
        summary.push(`note: ${line}`);
      }
    }
    log(`  cluster: workflow runs: ${counts.join('; ')}`);
    summary.push(`cluster workflow runs: ${counts.join('; ')}`);
  } finally {
    stores.destroy();
    await env.stop();
  }
  return { summary, failed };
}
