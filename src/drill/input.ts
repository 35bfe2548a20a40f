/**
 * The drill's input (plain JSON for the Temporal UI, the CLI and the client) and the checks that
 * refuse a drill before any fault is injected: an unknown scenario, objectives that are not
 * durations, a production drill without confirmation or with a scenario production does not
 * allow, a zone scenario on a cluster in one zone, a region scenario without a standby region.
 *
 * Definitions used everywhere (README, reports, metrics):
 *   RTO  the fault's injection → the first write acknowledged afterwards;
 *   RPO  acknowledged events missing afterwards: their count, and the age span in seconds between
 *        the oldest and the newest of them (0 when none is missing). Only the bad batches a
 *        `bad-writes` repair is meant to remove are left out.
 * Detection (the fault → the first failed probe) is reported as a phase of its own.
 *
 * Pure (no Node built-ins): the drill workflow validates its input with it.
 */
import { z } from 'zod';
import { DURATION_UNITS, formatDuration, parseDuration } from '../duration';
import { InputProblem } from '../errors';

export const DRILL_SCENARIOS = [
  'single-node',
  'damaged-file',
  'bad-writes',
  'zone-failure',
  'region-failure',
  'orchestrator-down',
] as const;
export type DrillScenario = (typeof DRILL_SCENARIOS)[number];

/** isolated: a private stack built from the newest verified backups; production: the real cluster. */
export const DRILL_TARGETS = ['isolated', 'production'] as const;
export type DrillTarget = (typeof DRILL_TARGETS)[number];

/** Scenarios a production drill may run unless the config says otherwise. */
export const DEFAULT_PRODUCTION_SCENARIOS: readonly DrillScenario[] = ['single-node', 'damaged-file'];

export interface Objective {
  /** Milliseconds from the fault to the first acknowledged write. */
  rtoMs: number;
  /** Age span of the acknowledged writes lost, milliseconds; 0: none may be lost. */
  rpoMs: number;
}

/**
 * The DR plan's objectives per scenario (its table: single node RPO 0 / RTO 5 min, zone < 1 min /
 * 15 min, region < 5 min / 1 h, data corruption 0 / 30 min). A bad write is data corruption; an
 * orchestrator down during a single-node failure is held to the single-node row.
 */
export const PLAN_OBJECTIVES: Readonly<Record<DrillScenario, Objective>> = {
  'single-node': { rtoMs: 5 * 60_000, rpoMs: 0 },
  'damaged-file': { rtoMs: 30 * 60_000, rpoMs: 0 },
  'bad-writes': { rtoMs: 30 * 60_000, rpoMs: 0 },
  'zone-failure': { rtoMs: 15 * 60_000, rpoMs: 60_000 },
  'region-failure': { rtoMs: 60 * 60_000, rpoMs: 5 * 60_000 },
  'orchestrator-down': { rtoMs: 5 * 60_000, rpoMs: 0 },
};

/** A duration as operators write it; `zero` also accepts "0" and "0s" (an RPO of nothing lost). */
function durationField(zero: boolean) {
  return z.string().transform((text, ctx) => {
    const ms = text.trim() === '0' ? 0 : parseDuration(text);
    if (ms === undefined) {
      ctx.addIssue({
        code: 'custom',
        message: `"${text}" is not a duration; write a number and a unit (${DURATION_UNITS.join(', ')}), e.g. "5m"`,
      });
      return z.NEVER;
    }
    if (ms < 0 || (!zero && ms === 0)) {
      ctx.addIssue({ code: 'custom', message: `"${text}" must be ${zero ? 'zero or more' : 'greater than zero'}` });
      return z.NEVER;
    }
    return ms;
  });
}

const ObjectiveInputSchema = z.strictObject(
  {
    /** e.g. "5s", "15m": the fault → the first acknowledged write. */
    rto: durationField(false).optional(),
    /** e.g. "0" (nothing acknowledged may be lost), "1m": the age span of lost acknowledged writes. */
    rpo: durationField(true).optional(),
  },
  { error: 'an objective is { "rto"?: duration, "rpo"?: duration }' },
);

const ScenarioSchema = z.enum(DRILL_SCENARIOS, {
  error: (issue) => `${JSON.stringify(issue.input)} is not a scenario (accepted: ${DRILL_SCENARIOS.join(', ')})`,
});

export const DrillInputSchema = z.strictObject({
  /** Default: every scenario the target allows and the topology supports. */
  scenarios: z.array(ScenarioSchema).min(1, { error: 'name at least one scenario, or leave it out' }).optional(),
  target: z.enum(DRILL_TARGETS, { error: `must be one of: ${DRILL_TARGETS.join(', ')}` }).default('isolated'),
  /** Per scenario; what is left out keeps the configured (by default the plan's) objective. */
  objectives: z
    .record(z.string(), ObjectiveInputSchema, {
      error: `objectives is { "<scenario>": { "rto"?, "rpo"? } } (scenarios: ${DRILL_SCENARIOS.join(', ')})`,
    })
    .superRefine((given, ctx) => {
      for (const key of Object.keys(given)) {
        if (!(DRILL_SCENARIOS as readonly string[]).includes(key)) {
          ctx.addIssue({
            code: 'custom',
            path: [key],
            message: `${JSON.stringify(key)} is not a scenario (accepted: ${DRILL_SCENARIOS.join(', ')})`,
          });
        }
      }
    })
    .transform((given) => given as Partial<Record<DrillScenario, { rto?: number; rpo?: number }>>)
    .optional(),
  reason: z.string().min(1).max(500).optional(),
  /**
   * A production drill started by a schedule confirms with this flag; one started by hand is
   * confirmed by a signal once its steady-state check has passed.
   */
  confirmed: z.boolean().default(false),
});
export type DrillInput = z.input<typeof DrillInputSchema>;
export type ParsedDrillInput = z.output<typeof DrillInputSchema>;

/** One drill at a time per cluster when started by the client or the CLI. */
export const drillWorkflowId = (cluster: string) => `drill-${cluster}`;

/** What the checks need to know of the cluster and the configuration. */
export interface DrillTopology {
  cluster: string;
  /** The zones of the cluster's nodes in the home region (empty when nodes have no zone). */
  zones: readonly string[];
  /** Declared standby regions. */
  standbyRegions: readonly string[];
  /** Scenarios the configuration allows on production. */
  productionScenarios: readonly DrillScenario[];
  /** Configured objectives (default: the plan's). */
  objectives: Readonly<Record<DrillScenario, Objective>>;
  /** The cluster is a drill's private stack: its own Temporal server and worker may be stopped. */
  privateStack?: boolean;
}

export interface DrillPlan {
  cluster: string;
  target: DrillTarget;
  scenarios: DrillScenario[];
  objectives: Record<DrillScenario, Objective>;
  /** Production only: a confirmation is still needed (a signal after the steady-state check). */
  awaitsConfirmation: boolean;
  reason: string;
}

/** Scenarios that kill processes only a drill's private stack runs, and what they kill. */
export const STACK_ONLY_SCENARIOS: Readonly<Partial<Record<DrillScenario, string>>> = {
  'zone-failure': 'kills every process of a zone (its nodes, its etcd member, its worker)',
  'orchestrator-down': "stops the drill's own Temporal server and worker",
  'region-failure':
    'stops every process of a region (its nodes, etcd members, workers, object store and Temporal server)',
};

/** Why `scenario` runs on a private stack only, or undefined when it runs anywhere. */
export function stackOnly(scenario: DrillScenario): string | undefined {
  const what = STACK_ONLY_SCENARIOS[scenario];
  return what && `${scenario} ${what}: it runs on a private stack (target "isolated") only`;
}

/** Why a scenario cannot run on this topology, or undefined when it can. */
export function unsupported(
  scenario: DrillScenario,
  topology: DrillTopology,
  target: DrillTarget = 'production',
): string | undefined {
  if (scenario === 'zone-failure' && new Set(topology.zones).size < 2) {
    return topology.zones.length === 0
      ? `zone-failure needs nodes in two zones; the nodes of ${topology.cluster} have no zone`
      : `zone-failure needs nodes in two zones; every node of ${topology.cluster} is in zone ${topology.zones[0]}`;
  }
  // An isolated drill runs its scenarios on a private stack (where this check passes).
  if (target === 'production' && !topology.privateStack) {
    const why = stackOnly(scenario);
    if (why) return why;
  }
  if (scenario === 'region-failure' && topology.standbyRegions.length === 0) {
    return 'region-failure needs a standby region (declare one under "regions")';
  }
  return undefined;
}

/**
 * The drill to run, or InputProblem (the field and why; nothing has been changed). Scenarios left out: all the target allows and the topology
 * supports. Named scenarios must all be possible: a drill does not quietly skip what it was asked.
 */
export function planDrill(input: ParsedDrillInput, topology: DrillTopology): DrillPlan {
  const allowed = (s: DrillScenario) => input.target !== 'production' || topology.productionScenarios.includes(s);
  let scenarios: DrillScenario[];
  if (input.scenarios) {
    scenarios = [...new Set(input.scenarios)];
    for (const s of scenarios) {
      if (!allowed(s)) {
        throw new InputProblem(
          'scenarios',
          `${s} is not allowed on production (allowed: ${topology.productionScenarios.join(', ') || 'none'}; ` +
            'drills.production.scenarios in the config); run it with target "isolated"',
        );
      }
      const why = unsupported(s, topology, input.target);
      if (why) throw new InputProblem('scenarios', why);
    }
  } else {
    scenarios = DRILL_SCENARIOS.filter((s) => allowed(s) && !unsupported(s, topology, input.target));
    if (scenarios.length === 0) throw new InputProblem('scenarios', 'no scenario is allowed on this target');
  }
  for (const s of Object.keys(input.objectives ?? {})) {
    if (!scenarios.includes(s as DrillScenario)) {
      throw new InputProblem(
        `objectives.${s}`,
        `${s} is not among the scenarios of this drill (${scenarios.join(', ')})`,
      );
    }
  }
  const objectives = { ...topology.objectives };
  for (const [s, o] of Object.entries(input.objectives ?? {}) as Array<
    [DrillScenario, { rto?: number; rpo?: number }]
  >) {
    objectives[s] = { rtoMs: o.rto ?? objectives[s].rtoMs, rpoMs: o.rpo ?? objectives[s].rpoMs };
  }
  return {
    cluster: topology.cluster,
    target: input.target,
    scenarios,
    objectives,
    awaitsConfirmation: input.target === 'production' && !input.confirmed,
    reason: input.reason ?? `${input.target} drill`,
  };
}

/** "RTO 5m, RPO 0" for reports and refusals. */
export function describeObjective(o: Objective): string {
  return `RTO ${formatDuration(o.rtoMs)}, RPO ${o.rpoMs === 0 ? '0' : formatDuration(o.rpoMs)}`;
}
