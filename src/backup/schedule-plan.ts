/**
 * The schedules the system owns, derived from config: one per database and backup tier, the
 * restore tests (L2 weekly, L3 monthly by default) and the quarterly drill of the replicated
 * cluster. Pure; the schedules module applies the plan to a Temporal namespace.
 */
import type { Config, ScheduleSpecConfig, Tier } from '../config';
import { TIERS } from '../domain';
import type { BackupInput } from './input';
import { backupScheduleId, drillScheduleId, restoreTestScheduleId } from './ids';
import type { DrillInput } from '../drill/input';
import type { RestoreTestInput } from '../restore/test-input';

const DEFAULT_CATCHUP_MS: Record<Tier, number> = {
  L1: 3_600_000,
  L2: 86_400_000,
  L3: 7 * 86_400_000,
};

export interface PlannedSchedule {
  scheduleId: string;
  workflowType: 'backup' | 'restoreTest' | 'drill';
  /** Prefix of the ids of the workflows the schedule starts (Temporal appends the time). */
  workflowId: string;
  args: [BackupInput] | [RestoreTestInput] | [DrillInput];
  spec: {
    intervals: Array<{ every: number; offset?: number }>;
    cronExpressions: string[];
    timezone: string;
    jitter?: number;
  };
  catchupWindowMs: number;
  paused: boolean;
  database: string;
  /** The backup tier; none for the drill. */
  tier?: Tier;
  /** Stable digest of everything above: equal digests mean nothing to update. */
  digest: string;
}

export function planSchedules(config: Config): PlannedSchedule[] {
  const planned: PlannedSchedule[] = [];
  for (const db of config.databases) {
    for (const tier of TIERS) {
      const spec = config.schedules.backup[tier];
      if (!spec) continue;
      planned.push(plannedBackupSchedule(db.name, tier, spec));
    }
    for (const tier of ['L2', 'L3'] as const) {
      const spec = config.schedules.restoreTest[tier];
      if (!spec) continue;
      planned.push(
        withDigest({
          scheduleId: restoreTestScheduleId(db.name, tier),
          workflowType: 'restoreTest',
          workflowId: `restore-test-${db.name}-${tier}-scheduled`,
          args: [{ database: db.name, tier }],
          spec: specOf(spec),
          catchupWindowMs: spec.catchupWindow ?? DEFAULT_CATCHUP_MS[tier],
          paused: spec.paused,
          database: db.name,
          tier,
        }),
      );
    }
  }
  const drill = config.schedules.drill;
  const cluster = config.databases.find((d) => d.nodes.length > 1);
  if (drill && cluster) {
    planned.push(
      withDigest({
        scheduleId: drillScheduleId(cluster.name),
        workflowType: 'drill',
        workflowId: `drill-${cluster.name}-scheduled`,
        args: [
          {
            target: 'production',
            scenarios: [...config.drills.production.scenarios],
            confirmed: true,
            reason: 'the quarterly drill (schedules.drill)',
          },
        ],
        spec: specOf(drill),
        catchupWindowMs: drill.catchupWindow ?? DRILL_CATCHUP_MS,
        paused: drill.paused,
        database: cluster.name,
      }),
    );
  }
  return planned;
}

/** A drill missed by more than this (Temporal was down: likely an outage) is skipped. */
const DRILL_CATCHUP_MS = 3_600_000;

function specOf(spec: ScheduleSpecConfig): PlannedSchedule['spec'] {
  return {
    intervals: spec.every ? [{ every: spec.every, ...(spec.offset ? { offset: spec.offset } : {}) }] : [],
    cronExpressions: spec.cron ?? [],
    timezone: spec.timezone,
    ...(spec.jitter ? { jitter: spec.jitter } : {}),
  };
}

function withDigest(body: Omit<PlannedSchedule, 'digest'>): PlannedSchedule {
  return { ...body, digest: digest(JSON.stringify(body)) };
}

function plannedBackupSchedule(database: string, tier: Tier, spec: ScheduleSpecConfig): PlannedSchedule {
  const scheduleId = backupScheduleId(database, tier);
  const body = {
    scheduleId,
    workflowType: 'backup' as const,
    workflowId: `backup-${database}-${tier}-scheduled`,
    args: [{ database, tier, reason: 'schedule' }] as [BackupInput],
    spec: specOf(spec),
    catchupWindowMs: spec.catchupWindow ?? DEFAULT_CATCHUP_MS[tier],
    paused: spec.paused,
    database,
    tier,
  };
  return { ...body, digest: digest(JSON.stringify(body)) };
}

/** FNV-1a, 32 bit: enough to tell "changed" from "unchanged", and needs no crypto module. */
export function digest(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}
