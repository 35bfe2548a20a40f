/**
 * On a node's host: a drill's private stack (target "isolated", src/drill/stack.ts) — started as a
 * detached process from a database restored from the real cluster's backups, driven through its
 * own Temporal server (the drill's scenarios run there as a production drill of the copy), and torn
 * down. Its files live under the drill's directory beside the node's data.
 */
import { Context, CancelledFailure } from '@temporalio/activity';
import { WorkflowExecutionAlreadyStartedError, WorkflowFailedError } from '@temporalio/client';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { KimiclawDr, connectTemporal } from '../client';
import { withoutOwnSettings } from '../dev/servers';
import { type Config, loadConfig } from '../config';
import { alive, startDetached, stopDetached } from '../drill/detached';
import { type DrillInput, type DrillScenario, drillWorkflowId, stackOnly } from '../drill/input';
import { regionFailbackWorkflowId } from '../failover/region-input';
import type { FailbackRegionResult } from '../workflows/region-failover';
import type { DrillReport } from '../drill/report';
import {
  type StackFault,
  type StackFaultRequest,
  type StackInfo,
  type StackSpec,
  faultRequestFile,
  faultResultFile,
  stackConfigFile,
  stackPidsFile,
} from '../drill/stack';
import { STACK_ENV, STACK_PID_ENV } from '../drill/topology';
import { InputProblem } from '../errors';
import { beating, drillDirOf } from './drill';
import type { ActivityDeps } from './index';

/** How long the stack's Temporal server may stay unreachable while its drill runs. */
const UNREACHABLE_MS = 5 * 60_000;
/** How long the private stack may take to start and be steady (its standby rebuilt from the seed). */
const STACK_START_TIMEOUT_MS = 10 * 60_000;

export function createDrillStackActivities({ config, node }: Pick<ActivityDeps, 'config'> & { node: string }) {
  const dirOf = drillDirOf(config, node);
  const files = (id: string) => ({
    dir: join(dirOf(id), 'stack'),
    spec: join(dirOf(id), 'stack-spec.json'),
    info: join(dirOf(id), 'stack-info.json'),
    log: join(dirOf(id), 'stack.log'),
  });

  /** Starts the stack from `seed` (a verified restore on this host); answers once it is steady. */
  async function drillStackStart(input: {
    drillId: string;
    cluster: string;
    seed: string;
  }): Promise<StackInfo & { pid: number }> {
    const db = config.databases.find((d) => d.name === input.cluster);
    if (!db) throw new Error(`no database "${input.cluster}" in the configuration`);
    const f = files(input.drillId);
    const spec: StackSpec = {
      dir: f.dir,
      database: db.name,
      nodes: db.nodes.map((n) => ({
        id: n.id,
        ...(n.zone ? { zone: n.zone } : {}),
        ...(n.region ? { region: n.region } : {}),
      })),
      ...(config.regions && config.regions.standby.length > 0
        ? {
            regions: {
              primary: config.regions.primary,
              standby: config.regions.standby.map((r) => r.name),
              copyIntervalMs: Math.min(...config.regions.standby.map((r) => r.copyInterval)),
            },
          }
        : {}),
      seed: input.seed,
      settings: {
        archiveInterval: config.archive.interval,
        probeInterval: config.cluster.probeInterval,
        replicaSilence: config.cluster.replicaSilence,
        degradeAfter: config.cluster.degradeAfter,
        failureThreshold: config.cluster.failureThreshold,
        healDeadline: config.drills.healDeadline,
      },
      steadyTimeoutMs: STACK_START_TIMEOUT_MS,
    };
    await rm(f.dir, { recursive: true, force: true });
    await mkdir(dirOf(input.drillId), { recursive: true });
    await writeFile(f.spec, JSON.stringify(spec), { mode: 0o600 });
    // None of this worker's settings or credentials: the stack has its own.
    const env = withoutOwnSettings(process.env);
    return beating(async () => {
      const { pid, ready } = await startDetached({
        name: 'the private stack',
        script: 'stack-main.ts',
        args: ['--spec', f.spec],
        env,
        logFile: f.log,
        readyEvent: 'stack-ready',
        timeoutMs: STACK_START_TIMEOUT_MS + 60_000,
      });
      const info = { ...(ready as unknown as StackInfo), pid };
      await writeFile(f.info, JSON.stringify(info), { mode: 0o600 });
      return info;
    });
  }

  /**
   * Runs the drill's scenarios on the stack: a confirmed production drill of the copy, started on
   * the stack's own Temporal server (picked up again, not started twice, when this activity is
   * retried after a worker was lost). region-failure runs last, as a drill of its own on the
   * standby region's Temporal server (the one that survives the primary region, as an operator's
   * would). Answers the report of them all, passed or failed.
   */
  async function drillStackRun(input: {
    drillId: string;
    drill: DrillInput & { scenarios: DrillScenario[] };
  }): Promise<{ report: DrillReport }> {
    const info = JSON.parse(await readFile(files(input.drillId).info, 'utf8')) as StackInfo;
    const stackConfig = loadConfig({ file: info.configFile, env: {} });
    const { scenarios } = input.drill;
    const runs: Array<{ temporal: string; scenarios: DrillScenario[] }> = [];
    const here = scenarios.filter((s) => s !== 'region-failure');
    if (here.length > 0) runs.push({ temporal: info.temporal, scenarios: here });
    if (scenarios.includes('region-failure')) {
      // Planning refused region-failure without a standby region; the stack has one wherever it does.
      const standby = stackConfig.regions?.standby[0]?.name;
      const temporal = standby && info.temporals?.[standby];
      if (!temporal) throw new Error("the private stack has no standby region's Temporal server");
      runs.push({ temporal, scenarios: ['region-failure'] });
    }
    let report: DrillReport | undefined;
    for (const run of runs) {
      const objectives = Object.fromEntries(
        Object.entries(input.drill.objectives ?? {}).filter(([s]) => run.scenarios.includes(s as DrillScenario)),
      );
      const ran = await runDrill(
        { ...stackConfig, temporal: { ...stackConfig.temporal, address: run.temporal } },
        { ...input.drill, scenarios: run.scenarios, objectives },
      );
      report = report ? joinReports(report, ran) : ran;
    }
    return { report: report! };
  }

  /** A confirmed production drill of the copy on one of the stack's Temporal servers; its report. */
  async function runDrill(stackConfig: Config, drill: DrillInput): Promise<DrillReport> {
    const client = await connectTemporal(stackConfig);
    const ctx = Context.current();
    try {
      const dr = new KimiclawDr(client, stackConfig);
      const workflowId = drillWorkflowId(stackConfig.databases[0]!.name);
      const handle = await dr.startDrill({ ...drill, target: 'production', confirmed: true }).catch((err) => {
        if (err instanceof Error && /already running/.test(err.message)) return client.workflow.getHandle(workflowId);
        if (err instanceof WorkflowExecutionAlreadyStartedError) return client.workflow.getHandle(workflowId);
        throw err;
      });
      const watch = () =>
        (handle.result() as Promise<DrillReport>).then(
          (report) => ({ report }),
          (err: unknown) => ({ err }),
        );
      let result = watch();
      // The stack's Temporal server may be down for a while (scenario orchestrator-down).
      let unreachableSince: number | undefined;
      for (;;) {
        const done = await Promise.race([result, sleep(1_000).then(() => undefined)]);
        if (done && 'report' in done) return done.report;
        if (done && 'err' in done) {
          // A drill that ran and missed an objective carries its report in the failure.
          const report = reportOf(done.err);
          if (report) return report;
          if (done.err instanceof WorkflowFailedError) throw done.err;
          unreachableSince ??= Date.now();
          if (Date.now() - unreachableSince > UNREACHABLE_MS) throw done.err;
          await sleep(1_000);
          result = watch();
          continue;
        }
        unreachableSince = undefined;
        ctx.heartbeat();
        if (ctx.cancellationSignal.aborted) {
          await handle.cancel().catch(() => undefined);
          throw new CancelledFailure('the drill was cancelled');
        }
      }
    } finally {
      await client.connection.close();
    }
  }

  /** Stops every process of the stack and removes its data (and what is left of the seed). */
  async function drillStackStop(input: {
    drillId: string;
    seed?: string;
  }): Promise<{ tornDown: boolean; detail: string }> {
    const f = files(input.drillId);
    const info = await readFile(f.info, 'utf8').then(
      (text) => JSON.parse(text) as StackInfo & { pid: number },
      () => undefined,
    );
    return beating(async () => {
      // The pids as the stack last wrote them down (a fault or a supervisor starts processes
      // again), and those it started with.
      const latest = await readFile(stackPidsFile(f.dir), 'utf8').then(
        (text) => JSON.parse(text) as Record<string, number>,
        () => ({}) as Record<string, number>,
      );
      if (info) await stopDetached(info.pid, 60_000);
      // A stack process that was killed could not stop its children: they go by their pids.
      const known = [
        ...Object.entries(info?.pids ?? {}),
        ...Object.entries(latest).map(([n, pid]) => [`${n} (later)`, pid] as const),
      ];
      const left = known.filter(([, pid], i) => pid > 0 && alive(pid) && known.findIndex(([, p]) => p === pid) === i);
      for (const [, pid] of left) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          if (alive(pid)) process.kill(pid, 'SIGKILL');
        }
      }
      // The stack's directory goes (its data, its config with the stack's own S3 key); its log,
      // spec and pids stay beside it for an operator.
      await rm(f.dir, { recursive: true, force: true });
      if (input.seed) await rm(input.seed, { force: true });
      const gone = Date.now() + 10_000;
      while (left.some(([, pid]) => alive(pid)) && Date.now() < gone) await sleep(100);
      const still = left.filter(([, pid]) => alive(pid)).map(([name]) => name);
      return still.length
        ? { tornDown: false, detail: `still running after SIGKILL: ${still.join(', ')}` }
        : {
            tornDown: true,
            detail: info
              ? `stopped${left.length ? ` (killed what its process left: ${left.map(([n]) => n).join(', ')})` : ''}; its files removed`
              : 'it had not started; its files removed',
          };
    });
  }

  /**
   * Scenarios orchestrator-down and zone-failure, on a private stack's own worker: asks the stack's
   * process for the fault (src/drill/stack.ts, StackFaultRequest) and answers it as soon as it is
   * in. Asked again with the same id (its worker was stopped before it answered), it answers the
   * fault already injected and injects nothing more.
   */
  async function drillStackFault(input: StackFaultRequest): Promise<StackFault> {
    const dir = process.env[STACK_ENV];
    const stackPid = Number(process.env[STACK_PID_ENV]);
    if (!dir || !stackPid) {
      throw new InputProblem('scenarios', stackOnly(FAULT_SCENARIO[input.kind])!);
    }
    const done = () =>
      readFile(faultResultFile(dir, input.id), 'utf8').then(
        (text) => JSON.parse(text) as StackFault,
        () => undefined,
      );
    const earlier = await done();
    if (earlier) return earlier;
    await writeFile(faultRequestFile(dir), JSON.stringify(input));
    process.kill(stackPid, 'SIGUSR2');
    const deadline = Date.now() + 20_000;
    for (;;) {
      const fault = await done();
      if (fault) return fault;
      if (Date.now() > deadline) throw new Error(`the stack did not inject the ${input.kind} fault within 20 s`);
      await sleep(50);
    }
  }

  /**
   * Scenario region-failure, on a private stack's worker of the standby region: the primary region
   * is back, and the drill moves the primary home as an operator would — failbackRegion on the
   * primary region's Temporal server (its nodes rejoin there, its monitor takes over), under the
   * drill's topology lease. Picked up again, not started twice, when retried.
   */
  async function drillStackFailback(input: {
    cluster: string;
    reason: string;
    underLease: string;
  }): Promise<FailbackRegionResult> {
    const dir = process.env[STACK_ENV];
    if (!dir) throw new InputProblem('scenarios', stackOnly('region-failure')!);
    // The stack's configuration as written: the primary region's Temporal server.
    const home = loadConfig({ file: stackConfigFile(dir), env: {} });
    const toRegion = home.regions?.primary;
    if (!toRegion) throw new Error('the private stack has no regions');
    const client = await connectTemporal(home);
    try {
      const handle = await client.workflow.start('failbackRegion', {
        taskQueue: home.temporal.taskQueue,
        workflowId: regionFailbackWorkflowId(input.cluster),
        args: [{ cluster: input.cluster, toRegion, confirm: true, reason: input.reason, underLease: input.underLease }],
        workflowIdConflictPolicy: 'USE_EXISTING',
      });
      return await beating(() => handle.result() as Promise<FailbackRegionResult>);
    } finally {
      await client.connection.close();
    }
  }

  return { drillStackStart, drillStackRun, drillStackStop, drillStackFault, drillStackFailback };
}

/** The scenario each kind of stack fault belongs to. */
const FAULT_SCENARIO: Record<StackFaultRequest['kind'], DrillScenario> = {
  orchestrator: 'orchestrator-down',
  zone: 'zone-failure',
  region: 'region-failure',
};

/** One report of the drills run one after the other on the stack's Temporal servers. */
function joinReports(a: DrillReport, b: DrillReport): DrillReport {
  const failed = [a, b].find((r) => r.status !== 'passed');
  const errors = [a.error, b.error].filter(Boolean);
  return {
    ...a,
    scenarios: [...a.scenarios, ...b.scenarios],
    status: failed ? failed.status : 'passed',
    ...(errors.length ? { error: errors.join('; ') } : {}),
    ...(b.endedAt !== undefined ? { endedAt: b.endedAt } : {}),
  };
}

function reportOf(err: unknown): DrillReport | undefined {
  if (!(err instanceof WorkflowFailedError)) return undefined;
  const details = (err.cause as { details?: unknown[] } | undefined)?.details;
  const report = details?.[0] as DrillReport | undefined;
  return report && Array.isArray(report.scenarios) ? report : undefined;
}
