/**
 * Workflow `drill`: rehearses disasters on the cluster the same way a real incident runs (the
 * monitor, failover, recoverNode, switchover do the work) and measures them with a ledger of
 * acknowledged writes (docs/architecture.md, "Drills"). Each scenario is a child workflow
 * (`drillScenario`) with timed phases: steady-state check → write load → fault → recovery (the
 * first write acknowledged after the fault) → healing back to the starting topology → measurement
 * on every node → integrity check. Healing runs whatever happened before it, also when the drill
 * is cancelled. The report is kept in the object store and the drill fails when a scenario missed
 * an objective or did not heal, saying which and by how much.
 *
 * Targets "isolated" (the default: a private stack restored from the backups, drill-isolated.ts)
 * and "production"; scenarios "single-node", "damaged-file", "bad-writes", "zone-failure",
 * "region-failure" and "orchestrator-down" (the last three stop processes only a private stack
 * runs; region-failure runs on the standby region's Temporal server).
 * Input for the Temporal UI: { "scenarios": ["single-node"] }; on the real cluster { "target":
 * "production", "scenarios": ["single-node"], "confirmed": true } — without "confirmed" it checks
 * the cluster, shows it in the `drillState` query and waits for the `confirm` signal.
 */
import {
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  condition,
  setHandler,
  type ChildWorkflowHandle,
  ParentClosePolicy,
  executeChild,
  isCancellation,
  startChild,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import {
  control,
  drillFailed,
  failureText,
  injectOn,
  keeper,
  leases,
  onHost,
  retake,
  stackFaultOn,
  stackOn,
} from './drill-proxies';
import { isolatedDrill } from './drill-isolated';
import type { DrillInput, DrillScenario, Objective } from '../drill/input';
import type { SteadyState } from '../drill/steady';
import {
  type DrillPhase,
  type DrillPhaseName,
  type DrillReport,
  type Healing,
  type Measured,
  type ScenarioReport,
  judge,
} from '../drill/report';
import { switchoverWorkflowId } from '../failover/input';
import { regionFailoverWorkflowId } from '../failover/region-input';
import { failoverRegion } from './region-failover';
import { backupWorkflowId, restoreWorkflowId } from '../backup/ids';
import { backup } from './backup';
import { restore } from './restore';
import { switchover } from './cluster';
import { leaseHolder } from './lease';
import { type DrillState, confirmDrillSignal, drillStateQuery } from './messages';

/** Not built yet; refused before anything is touched. */
const BUILT_SCENARIOS: readonly DrillScenario[] = [
  'single-node',
  'damaged-file',
  'bad-writes',
  'zone-failure',
  'region-failure',
  'orchestrator-down',
];
/** How long orchestrator-down keeps the stack's Temporal server and workers stopped. */
const ORCHESTRATOR_DOWN_MS = 15_000;
/** How long zone-failure keeps the zone's processes down. */
const ZONE_DOWN_MS = 10_000;
/** How long region-failure keeps the region's processes, store and Temporal server down. */
const REGION_DOWN_MS = 10_000;
/** How long a scenario asks for a steady cluster before it gives up, injecting nothing. */
const STEADY_WAIT_MS = 30_000;
/** How many bad batches a bad-writes drill writes (and its repair leaves out). */
const BAD_BATCHES = 10;

/** How long a drill waits for its confirmation before it ends, having injected nothing. */
const CONFIRM_WAIT = '15 minutes';

export interface DrillScenarioInput {
  drillId: string;
  cluster: string;
  scenario: DrillScenario;
  objective: Objective;
  queues: Record<string, string>;
  healDeadlineMs: number;
  /** The drill's hold on the topology lease: its steady-state checks and its switchover back run under it. */
  leaseHolder: string;
  /** With regions: each node's region, and the region this drill runs in. */
  regions?: { of: Record<string, string>; here: string };
}

export async function drill(input: DrillInput = {}): Promise<DrillReport> {
  const planned = await control.drillPlan({ input });
  // Left out, the scenarios are those built so far of what the target allows; named ones must be built.
  const plan = input.scenarios
    ? planned
    : { ...planned, scenarios: planned.scenarios.filter((s) => BUILT_SCENARIOS.includes(s)) };
  const unbuilt = plan.scenarios.filter((s) => !BUILT_SCENARIOS.includes(s));
  if (unbuilt.length > 0 || plan.scenarios.length === 0) {
    throw ApplicationFailure.create({
      type: 'InvalidInput',
      nonRetryable: true,
      message: `scenarios: ${unbuilt.join(', ') || 'none of those allowed'} not built yet (built: ${BUILT_SCENARIOS.join(', ')})`,
    });
  }
  // One report per run: the workflow id (drill-<cluster> when started by the client or CLI, one at
  // a time) and the run's start time.
  const id = `${workflowInfo().workflowId}-${workflowInfo()
    .startTime.toISOString()
    .replace(/[-:]|\.\d+/g, '')}`;
  if (plan.target === 'isolated') return isolatedDrill(plan, id);
  let state: DrillState = { phase: 'starting' };
  let confirmedBySignal = false;
  setHandler(drillStateQuery, () => state);
  setHandler(confirmDrillSignal, () => void (confirmedBySignal = true));
  // The topology lease for the whole drill, preemptible: no switchover, restore or other drill
  // starts meanwhile (one already running refuses this drill, before any fault), while the
  // failover and the node recovery the fault sets off take it over and the drill takes it back.
  const holder = leaseHolder();
  await leases.acquireTopologyLease({ cluster: plan.cluster, holder, purpose: 'drill', preemptible: true });
  const lease = { holder, events: [] as string[] };
  // Shielded from the drill's own cancellation (a cancelled drill still heals, its switchover back
  // runs under this lease) and stopped only by letGo().
  let holding!: CancellationScope;
  const held = CancellationScope.nonCancellable(() => {
    holding = new CancellationScope();
    return holding.run(() => holdLease(plan.cluster, holder, lease.events));
  }).catch(() => undefined);
  // Stops holding, and only then gives the lease back: an acquire still in flight would take it
  // again after the release (the holding activities wait for their cancellation to complete).
  const letGo = async () => {
    holding.cancel();
    await held;
    return leases.releaseTopologyLease({ cluster: plan.cluster, holder }).catch(() => undefined);
  };
  if (plan.awaitsConfirmation) {
    // Started by hand without "confirmed": show the operator the cluster it would hit, then wait
    // for the `confirm` signal (nothing is injected without it). The lease keeps the cluster as
    // checked meanwhile.
    try {
      const now = await control.drillSteady({ cluster: plan.cluster, leaseHolder: holder });
      if (!now.steady) {
        throw ApplicationFailure.create({
          type: 'NotSteady',
          nonRetryable: true,
          message: `the cluster is not steady, nothing was injected: ${now.problems.join('; ')}`,
        });
      }
      state = {
        phase: 'awaiting-confirmation',
        steady: `primary ${now.primary} at epoch ${now.epoch}, standby ${now.standbys.join(', ')}`,
        scenarios: plan.scenarios,
      };
      if (!(await condition(() => confirmedBySignal, CONFIRM_WAIT))) {
        throw ApplicationFailure.create({
          type: 'NotConfirmed',
          nonRetryable: true,
          message: `confirmed: no confirm signal within ${CONFIRM_WAIT}; nothing was injected (signal "confirm", or kimiclaw-dr drills confirm)`,
        });
      }
    } catch (err) {
      await CancellationScope.nonCancellable(letGo);
      throw err;
    }
  }
  state = { phase: 'running', scenarios: plan.scenarios };
  const report: DrillReport = {
    id,
    cluster: plan.cluster,
    target: plan.target,
    reason: plan.reason,
    startedAt: Date.now(),
    status: 'running',
    scenarios: [],
    lease,
  };
  // The scenario running now: a cancelled drill still waits for its healing and reports it.
  let running: ChildWorkflowHandle<typeof drillScenario> | undefined;
  try {
    for (const scenario of plan.scenarios) {
      running = await startChild(drillScenario, {
        workflowId: `${id}-${scenario}`,
        args: [
          {
            drillId: id,
            cluster: plan.cluster,
            scenario,
            objective: plan.objectives[scenario],
            queues: plan.queues,
            healDeadlineMs: plan.healDeadlineMs,
            leaseHolder: holder,
            ...(plan.regions ? { regions: plan.regions } : {}),
          },
        ],
        // A cancelled drill cancels the scenario, which heals before it ends.
        parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
      });
      report.scenarios.push(await running.result());
      running = undefined;
    }
    report.status = report.scenarios.every((s) => s.verdict.passed) ? 'passed' : 'failed';
    // A scenario that was cancelled still healed and returned its report; the drill ends cancelled.
    if (CancellationScope.current().consideredCancelled) {
      report.status = 'cancelled';
      throw new CancelledFailure('the drill was cancelled; it healed before ending');
    }
  } catch (err) {
    report.status = isCancellation(err) ? 'cancelled' : 'failed';
    throw err;
  } finally {
    await CancellationScope.nonCancellable(async () => {
      if (running) {
        const pending = running;
        const outcome = await pending.result().catch(() => undefined);
        if (outcome) report.scenarios.push(outcome);
      }
      const released = await letGo();
      lease.events.push(released?.released ? 'released at the end' : 'not held at the end (nothing to release)');
      report.endedAt = Date.now();
      await control.drillSaveReport({ report });
    });
  }
  if (report.status === 'failed') throw drillFailed(report);
  return report;
}

/**
 * Keeps the drill's lease renewed until cancelled. The machinery the drill sets off (a failover,
 * a node's rejoin or rebuild) preempts it; the drill notes that and takes the lease back as soon
 * as it is free again.
 */
async function holdLease(cluster: string, holder: string, events: string[]): Promise<void> {
  for (;;) {
    try {
      const kept = await keeper.keepTopologyLease({ cluster, holder, answerLoss: true });
      // Cancelled (the drill lets go of the lease): the keeper ended with it.
      if (CancellationScope.current().consideredCancelled) return;
      events.push(`${new Date().toISOString()} lost: ${kept.lost ?? 'released by another'}`);
    } catch (err) {
      if (isCancellation(err)) throw err;
      events.push(`${new Date().toISOString()} lost: ${failureText(err)}`);
    }
    for (;;) {
      await sleep('1s');
      const back = await retake.acquireTopologyLease({ cluster, holder, purpose: 'drill', preemptible: true }).then(
        () => true,
        (err: unknown) => {
          if (isCancellation(err)) throw err;
          return false;
        },
      );
      if (back) {
        events.push(`${new Date().toISOString()} taken back`);
        break;
      }
    }
  }
}

export async function drillScenario(input: DrillScenarioInput): Promise<ScenarioReport> {
  const phases: DrillPhase[] = [];
  const timed = async <T>(name: DrillPhaseName, fn: () => Promise<T>, describe?: (r: T) => string): Promise<T> => {
    const phase: DrillPhase = { name, startedAt: Date.now() };
    phases.push(phase);
    try {
      const result = await fn();
      phase.endedAt = Date.now();
      phase.ok = true;
      if (describe) phase.detail = describe(result);
      return result;
    } catch (err) {
      phase.endedAt = Date.now();
      phase.ok = false;
      phase.detail = failureText(err);
      throw err;
    }
  };
  const done = (extra: Partial<ScenarioReport> & { heal?: Healing; measured?: Measured; reasons?: string[] }) => {
    const verdict = judge(input.objective, extra.measured, extra.heal);
    return {
      scenario: input.scenario,
      objective: input.objective,
      phases,
      ...(extra.faultAt === undefined ? {} : { faultAt: extra.faultAt }),
      ...(extra.measured ? { measured: extra.measured } : {}),
      ...(extra.heal ? { heal: extra.heal } : {}),
      verdict: extra.reasons ? { passed: false, reasons: [...extra.reasons, ...verdict.reasons] } : verdict,
    };
  };

  const start = await timed(
    'steady',
    () => steadyWithin(input),
    (s) =>
      s.steady ? `primary ${s.primary} at epoch ${s.epoch}, standby ${s.standbys.join(', ')}` : s.problems.join('; '),
  );
  if (!start.steady) {
    // Aborted before any fault: nothing to heal.
    return done({
      heal: { healed: true, attempts: 0, detail: 'no fault was injected' },
      reasons: [`the cluster was not steady, no fault injected: ${start.problems.join('; ')}`],
    });
  }
  const original = start.primary;
  // The drill's files and its load live on the standby's host: a host the fault does not touch
  // (for region-failure, a node of the region this drill runs in, which takes over).
  const chosenHost = input.scenario === 'region-failure' ? regionHost(input, original) : start.standbys[0]!;
  if (chosenHost === undefined) {
    return done({
      heal: { healed: true, attempts: 0, detail: 'no fault was injected' },
      reasons: [
        `region-failure runs on the Temporal server of a standby region (with its workers), not of region ${input.regions?.of[original] ?? '?'} that holds the primary ${original}; no fault injected`,
      ],
    });
  }
  const hostNode: string = chosenHost;
  const host = onHost(input.queues[hostNode]!);
  const drillDir = `${input.drillId}-${input.scenario}`;
  let load: { pid: number; ledger: string; startLsn: number } | undefined;
  let faultAt: number | undefined;
  let detectedAt: number | undefined;
  let measured: Measured | undefined;
  let heal: Healing | undefined;
  /** region-failure: the primary was moved to this drill's region (failoverRegion started). */
  let movedRegion = false;
  const reasons: string[] = [];
  // Detection happens while the scenario waits for recovery: a phase of its own, from the fault.
  const detected = (at: number, detail: string) => {
    const inject = phases.findIndex((p) => p.name === 'inject');
    phases.splice(inject + 1, 0, { name: 'detect', startedAt: faultAt!, endedAt: at, ok: true, detail });
    detectedAt = at;
  };
  try {
    if (input.scenario === 'damaged-file' || input.scenario === 'bad-writes') {
      // A fresh backup first: the primary's data checkpointed into its file (data at rest for the
      // fault to damage; a new cluster's rows may all be in the write-ahead log still), the point
      // a surgical restore starts from, and a restore point should the drill's recovery fail.
      await timed(
        'prepare',
        () =>
          executeChild(backup, {
            workflowId: backupWorkflowId(input.cluster, 'L1', new Date()),
            args: [{ database: input.cluster, tier: 'L1', reason: `drill ${input.drillId}: before the fault` }],
          }),
        (b) => `L1 backup ${b.backupId} of ${b.node}`,
      );
    }
    load = await timed('load', async () => {
      const started = await host.drillLoadStart({ drillId: drillDir, cluster: input.cluster });
      await host.drillAwaitAcks({ ledger: started.ledger, after: 0, count: 20, timeoutMs: 60_000 });
      return started;
    });
    const ledger = load.ledger;
    const recoverTimeoutMs = input.objective.rtoMs + 120_000;
    if (input.scenario === 'damaged-file') {
      const fault = await timed(
        'inject',
        () => injectOn(input.queues[original]!).damageNodeFile({ node: original, database: input.cluster }),
        (f) => `${f.bytes / 1024} KiB of block ${f.blockId} of ${original}'s ${f.path} overwritten`,
      );
      faultAt = fault.at;
      // Latent until found: the outage (and the RTO) starts when the node reports the damage.
      const found = await host.drillAwaitDamage({
        cluster: input.cluster,
        node: original,
        after: fault.at,
        timeoutMs: recoverTimeoutMs,
      });
      detected(found.detectedAt, `${original} reported its file damaged (by ${found.detectedBy}: ${found.reason})`);
      const from = found.detectedAt;
      await timed(
        'recover',
        () =>
          host.drillAwaitAcks({ ledger, after: from, afterEpoch: start.epoch, count: 20, timeoutMs: recoverTimeoutMs }),
        (first) => `first write acknowledged by ${first.node} at epoch ${first.epoch}`,
      );
    } else if (input.scenario === 'bad-writes') {
      const fault = await timed(
        'inject',
        () => host.drillWriteBadBatches({ cluster: input.cluster, count: BAD_BATCHES, pauseMs: 200 }),
        (f) =>
          `${f.lsns.length} bad batches of 2 events written to ${f.primary} between good writes (LSNs ${f.lsns.join(', ')})`,
      );
      faultAt = fault.at;
      // The drill knows the bad batches at once, as an operator who found them would: the
      // surgical restore leaves exactly them out and keeps every good write around them.
      const from = Date.now();
      detected(from, 'the bad batches named for a surgical restore');
      await timed(
        'recover',
        async () => {
          const repaired = await executeChild(restore, {
            workflowId: restoreWorkflowId(input.cluster, new Date()),
            args: [
              {
                database: input.cluster,
                excludeLsns: fault.lsns.map((lsn) => ({ fromLsn: lsn, toLsn: lsn })),
              },
            ],
          });
          const first = await host.drillAwaitAcks({
            ledger,
            after: from,
            afterEpoch: start.epoch,
            count: 20,
            timeoutMs: recoverTimeoutMs,
          });
          return { repaired, first };
        },
        ({ repaired, first }) =>
          `restore ${repaired.method} left out ${repaired.leftOut?.length ?? 0} batches ` +
          `(${(repaired.leftOut ?? []).reduce((n, r) => n + r.events, 0)} events); ` +
          `first write acknowledged by ${first.node} at epoch ${first.epoch}`,
      );
    } else if (input.scenario === 'region-failure') {
      const fault = await timed('inject', injectKill, (f) => f.detail);
      faultAt = fault.at;
      // An operator would be alerted by the probes, then decide: the drill decides at once.
      const lost = await awaitUnsteady(input, input.objective.rtoMs + 120_000);
      detected(lost.at, `the primary's region stopped answering (${lost.why}); failoverRegion started at once`);
      const here = input.regions!.here;
      await timed(
        'recover',
        async () => {
          movedRegion = true;
          const moved = await executeChild(failoverRegion, {
            workflowId: regionFailoverWorkflowId(input.cluster),
            args: [
              {
                cluster: input.cluster,
                toRegion: here,
                confirm: true,
                reason: `drill ${input.drillId}: region ${input.regions!.of[original]} lost`,
              },
            ],
          });
          const first = await host.drillAwaitAcks({
            ledger,
            after: fault.at,
            afterEpoch: start.epoch,
            count: 20,
            timeoutMs: recoverTimeoutMs,
          });
          return { moved, first };
        },
        ({ moved, first }) =>
          `failoverRegion ${moved.method} ${moved.newPrimary} at epoch ${moved.epoch} in ${moved.rtoSeconds} s; ` +
          `first write acknowledged by ${first.node} at epoch ${first.epoch}`,
      );
    } else {
      // single-node: the primary SIGKILLed. orchestrator-down: the same kill, with the stack's
      // Temporal server and workers stopped right after it for a while (the monitor cannot act
      // until they are back). zone-failure: every process of the primary's zone killed at once
      // (its nodes, its etcd member, its worker), back after a while. The last two are injected by
      // the private stack's process.
      const fault = await timed('inject', injectKill, (f) => f.detail);
      faultAt = fault.at;
      await timed(
        'recover',
        () =>
          host.drillAwaitAcks({
            ledger,
            after: fault.at,
            // A zone's failure is over when a node of another zone acknowledges as the new primary
            // (the zone coming back must not look like a recovery).
            ...(input.scenario === 'zone-failure' ? { afterEpoch: start.epoch } : {}),
            count: 20,
            timeoutMs: recoverTimeoutMs,
          }),
        (first) => `first write acknowledged by ${first.node} at epoch ${first.epoch}`,
      );
      const failover = await control.drillFailoverStarted({ cluster: input.cluster, after: fault.at });
      if (failover.at !== undefined) {
        const tookLease = failover.preempted?.includes(input.leaseHolder);
        detected(
          failover.at,
          `the monitor started ${failover.workflowId}${tookLease ? ", which took over the drill's lease" : ''}`,
        );
      }
    }
  } catch (err) {
    reasons.push(`the scenario stopped: ${failureText(err)}`);
  } finally {
    // Healing runs whatever happened before, also when the drill is cancelled.
    await CancellationScope.nonCancellable(async () => {
      if (load) await host.drillLoadStop({ pid: load.pid }).catch(() => undefined);
      heal = await timed(
        'heal',
        async () => {
          // The primary moved to another region: the region comes back, and the drill moves the
          // primary home (failbackRegion on that region's Temporal), then heals as any scenario.
          const deadline = Date.now() + input.healDeadlineMs;
          const back = movedRegion ? await failBack(input, hostNode, original, deadline) : undefined;
          const healed = await healCluster(input, original, deadline);
          return back ? { ...healed, detail: `${back}; ${healed.detail}` } : healed;
        },
        (h) => h.detail,
      ).catch((err: unknown): Healing => ({ healed: false, attempts: 0, detail: failureText(err) }));
      // Checks that fail are reasons in the report, not a drill that ends without one.
      if (load && faultAt !== undefined && heal.healed)
        await afterHealing(load, faultAt, start.epoch).catch((err: unknown) => {
          reasons.push(`the checks after healing stopped: ${failureText(err)}`);
        });
    });
  }
  return done({ faultAt, measured, heal, ...(reasons.length ? { reasons } : {}) });

  /** The kill of single-node, orchestrator-down, zone-failure or region-failure: when it was in, and what it was. */
  async function injectKill(): Promise<{ at: number; detail: string }> {
    // The stack's process injects these; asked from the drill's host (in the zone or region that
    // takes over), or for orchestrator-down from the primary's.
    const stack = {
      'region-failure': { kind: 'region', downMs: REGION_DOWN_MS, from: hostNode },
      'zone-failure': { kind: 'zone', downMs: ZONE_DOWN_MS, from: hostNode },
      'orchestrator-down': { kind: 'orchestrator', downMs: ORCHESTRATOR_DOWN_MS, from: original },
    } as const;
    if (input.scenario in stack) {
      const s = stack[input.scenario as keyof typeof stack];
      const f = await stackFaultOn(input.queues[s.from]!).drillStackFault({
        id: `${drillDir}-fault`,
        kind: s.kind,
        node: original,
        downMs: s.downMs,
      });
      const back = `${s.downMs / 1000} s`;
      const what = f.killed.join(', ');
      const detail = {
        region: `every process of region ${f.region} stopped at once (${what}); started again after ${back}`,
        zone: `every process of zone ${f.zone} SIGKILLed at once (${what}); started again after ${back}`,
        orchestrator: `SIGKILL to ${original} (pid ${f.pid}); the stack's Temporal server and workers stopped for ${back}`,
      }[s.kind];
      return { at: f.at, detail };
    }
    const f = await injectOn(input.queues[original]!).signalNode({ node: original, signal: 'SIGKILL' });
    return { at: f.at, detail: `SIGKILL to ${original} (pid ${f.pid})` };
  }

  /** Measurement and integrity checks, on the healed cluster. */
  async function afterHealing(
    load: { ledger: string; startLsn: number },
    faultAt: number,
    startEpoch: number,
  ): Promise<void> {
    const { ledger, startLsn } = load;
    const at = faultAt;
    // A damaged file's outage starts at its detection (before it, the node serves normally);
    // bad writes' at the start of their repair.
    const latentFault = input.scenario === 'damaged-file' || input.scenario === 'bad-writes';
    const from = latentFault && detectedAt !== undefined ? detectedAt : at;
    const latent = from !== at;
    const result = await timed('measure', () =>
      host.drillMeasure({
        ledger,
        faultAt: from,
        cluster: input.cluster,
        afterLsn: startLsn,
        ...(latent ? { afterEpoch: startEpoch } : {}),
      }),
    );
    measured = {
      ...result,
      ...(latent ? { rtoFrom: 'detection' as const } : {}),
      ...(detectedAt === undefined ? {} : { detectMs: detectedAt - at }),
    };
    const verified = await timed(
      'verify',
      () => control.drillVerify({ cluster: input.cluster, primary: original }),
      (v) => v.detail,
    );
    if (!verified.same) reasons.push(verified.detail);
    if (input.scenario === 'bad-writes') {
      const bad = await host.drillCountBad({ cluster: input.cluster, afterLsn: startLsn });
      const left = Object.entries(bad).filter(([, n]) => n > 0);
      if (left.length)
        reasons.push(`bad events left after the repair: ${left.map(([id, n]) => `${n} on ${id}`).join(', ')}`);
    }
  }
}

/**
 * The steady-state check, asked again for a while before a scenario gives up: one probe that times
 * out on a busy host (or a rebuild finishing) does not call off a scenario, a cluster that stays
 * unsteady does.
 */
async function steadyWithin(input: DrillScenarioInput): Promise<SteadyState> {
  const deadline = Date.now() + STEADY_WAIT_MS;
  for (;;) {
    const now = await control.drillSteady({ cluster: input.cluster, leaseHolder: input.leaseHolder });
    if (now.steady || Date.now() >= deadline) return now;
    await sleep('2s');
  }
}

/** region-failure's host: a node of the region this drill runs in, not in the primary's region. */
function regionHost(input: DrillScenarioInput, primary: string): string | undefined {
  const r = input.regions;
  if (!r || r.of[primary] === r.here) return undefined;
  return Object.keys(r.of).find((n) => r.of[n] === r.here && input.queues[n]);
}

/** Probes the cluster until it is no longer steady (the fault is seen); when, and why. */
async function awaitUnsteady(input: DrillScenarioInput, timeoutMs: number): Promise<{ at: number; why: string }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const now = await control.drillSteady({ cluster: input.cluster, leaseHolder: input.leaseHolder });
    if (!now.steady) return { at: Date.now(), why: now.problems[0] ?? 'not steady' };
    if (Date.now() > deadline) throw ApplicationFailure.nonRetryable('the fault was not seen by the probes');
    await sleep('200ms');
  }
}

/**
 * region-failure's healing: failbackRegion on the primary region's Temporal server once it is back
 * (asked of this region's worker on the host), tried again until it moved the primary home or the
 * heal deadline passed. Says what it did.
 */
async function failBack(
  input: DrillScenarioInput,
  hostNode: string,
  original: string,
  deadline: number,
): Promise<string> {
  const home = input.regions?.of[original];
  let last = '';
  while (Date.now() < deadline) {
    // Nothing to move when the primary is home already (the region failover did not get as far).
    const now = await control.drillSteady({ cluster: input.cluster, leaseHolder: input.leaseHolder });
    if (now.steady && input.regions?.of[now.primary] === home) return `the primary ${now.primary} is in region ${home}`;
    try {
      const back = await stackOn(input.queues[hostNode]!, 3).drillStackFailback({
        cluster: input.cluster,
        reason: `drill ${input.drillId}: back to region ${home}`,
        underLease: input.leaseHolder,
      });
      return `failbackRegion moved the primary ${back.from} → ${back.to} at epoch ${back.epoch} (writes paused ${back.writePauseMs} ms)`;
    } catch (err) {
      last = failureText(err);
      await sleep('2s');
    }
  }
  return `failbackRegion did not complete by the deadline: ${last}`;
}

/**
 * Back to the starting topology before the deadline: every node an in-sync replica of the
 * original primary. The killed node is started again by its supervisor (systemd, or `npm start`)
 * and rejoins through the monitor's recoverNode; the primary is then moved back by a switchover.
 */
async function healCluster(input: DrillScenarioInput, original: string, deadline: number): Promise<Healing> {
  let attempts = 0;
  let last = '';
  while (Date.now() < deadline) {
    attempts++;
    const now = await control.drillSteady({ cluster: input.cluster, leaseHolder: input.leaseHolder });
    if (now.steady && now.primary === original) {
      return {
        healed: true,
        attempts,
        detail: `steady: ${original} primary at epoch ${now.epoch}, standby ${now.standbys.join(', ')}`,
      };
    }
    if (now.steady) {
      await executeChild(switchover, {
        workflowId: switchoverWorkflowId(input.cluster, new Date()),
        args: [
          {
            cluster: input.cluster,
            to: original,
            reason: `drill ${input.drillId}: back to the starting topology`,
            underLease: input.leaseHolder,
          },
        ],
      }).then(
        () => undefined,
        async (err: unknown) => {
          // The lease is with the machinery (or being taken back): try again shortly.
          last = `switchover back to ${original}: ${failureText(err)}`;
          await sleep('1s');
        },
      );
      continue;
    }
    last = now.problems.join('; ');
    await sleep('2s');
  }
  return { healed: false, attempts, detail: `not steady by the deadline: ${last}` };
}
