/**
 * A drill's report (the JSON is the source of truth) and what is decided from it, pure: the
 * verdict of each scenario against its objectives (which one was missed, and by how much), the
 * trend over many drills ("are we getting better?"), and the values of the drill metrics.
 */
import { formatDuration } from '../duration';
import type { DrillScenario, DrillTarget, Objective } from './input';
import type { AckPlace } from './measure';

/** The phases of a scenario, in order; each timed from one clock (epoch ms). */
export const DRILL_PHASES = [
  'steady',
  'prepare',
  'load',
  'inject',
  'detect',
  'recover',
  'measure',
  'heal',
  'verify',
] as const;
export type DrillPhaseName = (typeof DRILL_PHASES)[number];

export interface DrillPhase {
  name: DrillPhaseName;
  startedAt: number;
  endedAt?: number;
  /** false: the phase failed (detail says why). */
  ok?: boolean;
  detail?: string;
}

export interface Measured {
  /**
   * The outage → the first write acknowledged afterwards; undefined: none was. The outage starts
   * at the fault, or at its detection where `rtoFrom` says so (a damaged file is latent: the node
   * serves until its damage is found).
   */
  rtoMs?: number;
  rtoFrom?: 'detection';
  /**
   * The fault → its detection (its own phase): the monitor starting a failover, or for a damaged
   * file the node reporting the damage.
   */
  detectMs?: number;
  rpo: { events: number; spanMs: number };
  acknowledged: number;
  /** Where lost batches had been acknowledged, and per node how many events each misses. */
  lost?: { batches: number; first: AckPlace; last: AckPlace; byNode: Record<string, number> };
  /** Acknowledged events held twice, or at another (id, LSN), on any node. */
  duplicated: number;
  changed: number;
}

export interface Healing {
  healed: boolean;
  attempts: number;
  /** What the last steady-state check said (the problems when it did not pass). */
  detail: string;
}

export interface Verdict {
  passed: boolean;
  /** Each objective missed or check failed, with by how much. */
  reasons: string[];
}

export interface ScenarioReport {
  scenario: DrillScenario;
  objective: Objective;
  phases: DrillPhase[];
  faultAt?: number;
  measured?: Measured;
  heal?: Healing;
  verdict: Verdict;
}

export type DrillStatus = 'running' | 'passed' | 'failed' | 'cancelled';

export interface DrillReport {
  id: string;
  cluster: string;
  target: DrillTarget;
  reason: string;
  startedAt: number;
  endedAt?: number;
  status: DrillStatus;
  scenarios: ScenarioReport[];
  /** The drill's hold on the cluster's topology lease: who, and each time it was taken over and back. */
  lease?: { holder: string; events: string[] };
  /** Why the drill as a whole failed, beyond its scenarios' reasons (e.g. its private stack did not start). */
  error?: string;
  /** Target "isolated": the private stack the scenarios ran on, and whether it was torn down. */
  stack?: PrivateStackReport;
}

export interface PrivateStackReport {
  /** The backup the stack's database was restored from (verified by that restore), and to which LSN. */
  backupId?: string;
  restoredLsn?: number;
  /** The real node whose host ran the stack. */
  host?: string;
  /** Seconds to restore the database, and to start the stack until it was steady. */
  restoreSeconds?: number;
  startSeconds?: number;
  tornDown: boolean;
  detail: string;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;

/**
 * Passed when every objective is met and every check holds: a write was acknowledged after the
 * fault within the RTO; no acknowledged event was lost beyond the RPO (with an RPO of 0, none);
 * none is held twice or at another place; the cluster healed.
 */
export function judge(objective: Objective, measured: Measured | undefined, heal: Healing | undefined): Verdict {
  const reasons: string[] = [];
  if (!measured) reasons.push('nothing was measured (the scenario did not reach its measurement)');
  else {
    if (measured.rtoMs === undefined) {
      reasons.push(`RTO: no write was acknowledged after the ${measured.rtoFrom ? 'detection' : 'fault'}`);
    } else if (measured.rtoMs > objective.rtoMs) {
      reasons.push(
        `RTO ${seconds(measured.rtoMs)} missed the objective ${formatDuration(objective.rtoMs)} by ${seconds(measured.rtoMs - objective.rtoMs)}`,
      );
    }
    const where = measured.lost
      ? ` (${measured.lost.batches} batches acknowledged at LSN ${measured.lost.first.lsn}–${measured.lost.last.lsn}, ` +
        `epoch ${measured.lost.first.epoch}–${measured.lost.last.epoch}, by ${measured.lost.first.node}` +
        `${measured.lost.last.node !== measured.lost.first.node ? ` and ${measured.lost.last.node}` : ''}; missing on ` +
        `${Object.entries(measured.lost.byNode)
          .filter(([, n]) => n > 0)
          .map(([id, n]) => `${id} ${n}`)
          .join(', ')})`
      : '';
    if (objective.rpoMs === 0 && measured.rpo.events > 0) {
      reasons.push(`RPO: ${measured.rpo.events} acknowledged events lost (objective: none)${where}`);
    } else if (measured.rpo.events > 0 && measured.rpo.spanMs > objective.rpoMs) {
      reasons.push(
        `RPO: ${measured.rpo.events} acknowledged events lost over ${seconds(measured.rpo.spanMs)}, beyond the objective ${formatDuration(objective.rpoMs)} by ${seconds(measured.rpo.spanMs - objective.rpoMs)}${where}`,
      );
    }
    if (measured.duplicated > 0) reasons.push(`${measured.duplicated} acknowledged events are held twice`);
    if (measured.changed > 0) reasons.push(`${measured.changed} acknowledged events are held at another place`);
  }
  if (!heal?.healed) reasons.push(`not healed: ${heal ? heal.detail : 'healing did not run'}`);
  return { passed: reasons.length === 0, reasons };
}

export interface ScenarioTrend {
  scenario: DrillScenario;
  runs: number;
  passed: number;
  /** passed / runs. */
  passRate: number;
  rtoMedianMs?: number;
  rtoWorstMs?: number;
  rpoWorstEvents: number;
  /** The newest run's start, epoch ms. */
  lastRunAt: number;
  lastPassed: boolean;
}

function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Per scenario over the given drills (a drill still running is left out): pass rate, RTO median and worst, RPO worst. */
export function trend(reports: readonly DrillReport[]): ScenarioTrend[] {
  const runs = new Map<DrillScenario, Array<{ at: number; s: ScenarioReport }>>();
  for (const r of reports.filter((x) => x.status !== 'running')) {
    for (const s of r.scenarios) runs.set(s.scenario, [...(runs.get(s.scenario) ?? []), { at: r.startedAt, s }]);
  }
  return [...runs].map(([scenario, list]) => {
    const rtos = list.flatMap(({ s }) => (s.measured?.rtoMs === undefined ? [] : [s.measured.rtoMs]));
    const newest = list.reduce((a, b) => (b.at > a.at ? b : a));
    const passed = list.filter(({ s }) => s.verdict.passed).length;
    return {
      scenario,
      runs: list.length,
      passed,
      passRate: passed / list.length,
      ...(rtos.length ? { rtoMedianMs: median(rtos), rtoWorstMs: Math.max(...rtos) } : {}),
      rpoWorstEvents: Math.max(0, ...list.map(({ s }) => s.measured?.rpo.events ?? 0)),
      lastRunAt: newest.at,
      lastPassed: newest.s.verdict.passed,
    };
  });
}

/** The drill metrics' values per scenario, from the newest finished run of each (rebuilt at start). */
export function drillMetricValues(reports: readonly DrillReport[]): Array<{
  scenario: DrillScenario;
  lastRunTimestamp: number;
  passed: 0 | 1;
  rtoSeconds?: number;
  rpoEvents?: number;
}> {
  const newest = new Map<DrillScenario, { at: number; s: ScenarioReport }>();
  for (const r of reports.filter((x) => x.status !== 'running')) {
    for (const s of r.scenarios) {
      const seen = newest.get(s.scenario);
      if (!seen || r.startedAt > seen.at) newest.set(s.scenario, { at: r.startedAt, s });
    }
  }
  return [...newest].map(([scenario, { at, s }]) => ({
    scenario,
    lastRunTimestamp: at / 1000,
    passed: s.verdict.passed ? 1 : 0,
    ...(s.measured?.rtoMs === undefined ? {} : { rtoSeconds: s.measured.rtoMs / 1000 }),
    ...(s.measured ? { rpoEvents: s.measured.rpo.events } : {}),
  }));
}
