/**
 * Temporal Schedules instead of cron. `applySchedules` makes the namespace hold exactly the
 * schedules the config lists: it creates what is missing, updates what changed, leaves alone what
 * is equal and deletes schedules it owns (id prefix kimiclaw-dr-) that are no longer configured.
 * Running it twice changes nothing the second time.
 */
import {
  ScheduleAlreadyRunning,
  ScheduleOverlapPolicy,
  type Client,
  type ScheduleDescription,
  type ScheduleOptions,
} from '@temporalio/client';
import { TypedSearchAttributes } from '@temporalio/common';
import type { Config } from './config';
import { SCHEDULE_ID_PREFIX } from './backup/ids';
import { planSchedules, type PlannedSchedule } from './backup/schedule-plan';
import { DrDatabase, DrTier } from './workflows/search-attributes';

export interface ApplyResult {
  created: string[];
  updated: string[];
  unchanged: string[];
  deleted: string[];
}

const NOTE_PREFIX = 'managed by kimiclaw-dr schedules apply; config digest ';

function scheduleOptions(planned: PlannedSchedule, config: Config): ScheduleOptions {
  return {
    scheduleId: planned.scheduleId,
    spec: {
      intervals: planned.spec.intervals,
      cronExpressions: planned.spec.cronExpressions,
      timezone: planned.spec.timezone,
      jitter: planned.spec.jitter,
    },
    action: {
      type: 'startWorkflow',
      workflowType: planned.workflowType,
      workflowId: planned.workflowId,
      taskQueue: config.temporal.taskQueue,
      args: planned.args,
      typedSearchAttributes: new TypedSearchAttributes([
        { key: DrDatabase, value: planned.database },
        ...(planned.tier ? [{ key: DrTier, value: planned.tier }] : []),
      ]),
    },
    policies: {
      // A run still going when the next one is due: skip the new one, never run two.
      overlap: ScheduleOverlapPolicy.SKIP,
      catchupWindow: planned.catchupWindowMs,
      pauseOnFailure: false,
    },
    state: { paused: planned.paused, note: `${NOTE_PREFIX}${planned.digest}` },
  };
}

/** Ids of the schedules this system owns in the namespace. */
export async function ownedScheduleIds(client: Client): Promise<string[]> {
  const ids: string[] = [];
  for await (const summary of client.schedule.list()) {
    if (summary.scheduleId.startsWith(SCHEDULE_ID_PREFIX)) ids.push(summary.scheduleId);
  }
  return ids.sort();
}

export async function applySchedules(client: Client, config: Config): Promise<ApplyResult> {
  const planned = planSchedules(config);
  const existing = new Set(await ownedScheduleIds(client));
  const result: ApplyResult = { created: [], updated: [], unchanged: [], deleted: [] };

  for (const p of planned) {
    const options = scheduleOptions(p, config);
    if (!existing.has(p.scheduleId)) {
      try {
        await client.schedule.create(options);
        result.created.push(p.scheduleId);
        continue;
      } catch (err) {
        // Listing is eventually consistent: a schedule created moments ago may not be listed yet.
        if (!(err instanceof ScheduleAlreadyRunning)) throw err;
      }
    }
    const handle = client.schedule.getHandle(p.scheduleId);
    const current = await handle.describe();
    if (current.state.note === options.state?.note && (!p.paused || current.state.paused)) {
      result.unchanged.push(p.scheduleId);
      continue;
    }
    await handle.update((prev: ScheduleDescription) => ({
      spec: options.spec,
      action: options.action,
      policies: options.policies,
      // An operator's pause survives an apply; config can pause, not silently resume.
      state: { paused: p.paused || prev.state.paused, note: options.state?.note },
    }));
    result.updated.push(p.scheduleId);
  }

  const wanted = new Set(planned.map((p) => p.scheduleId));
  for (const id of existing) {
    if (wanted.has(id)) continue;
    await client.schedule.getHandle(id).delete();
    result.deleted.push(id);
  }
  return result;
}

export interface ScheduleInfo {
  scheduleId: string;
  paused: boolean;
  note?: string;
  spec: string;
  nextRuns: string[];
  recentRuns: Array<{ scheduledAt: string; workflowId?: string }>;
}

export async function describeSchedules(client: Client): Promise<ScheduleInfo[]> {
  const infos: ScheduleInfo[] = [];
  for (const id of await ownedScheduleIds(client)) {
    const d = await client.schedule.getHandle(id).describe();
    const intervals = (d.spec.intervals ?? []).map(
      (i) => `every ${String(i.every)}${i.offset ? ` +${String(i.offset)}` : ''}`,
    );
    const crons = (d.spec.calendars ?? []).length > 0 ? [`${d.spec.calendars?.length} calendar rule(s)`] : [];
    infos.push({
      scheduleId: id,
      paused: d.state.paused,
      note: d.state.note,
      spec: [...intervals, ...crons].join(', ') || 'none',
      nextRuns: d.info.nextActionTimes.slice(0, 3).map((t) => t.toISOString()),
      recentRuns: d.info.recentActions.slice(-3).map((a) => ({
        scheduledAt: a.scheduledAt.toISOString(),
        workflowId: a.action.type === 'startWorkflow' ? a.action.workflow.workflowId : undefined,
      })),
    });
  }
  return infos;
}

function ownedHandle(client: Client, id: string) {
  if (!id.startsWith(SCHEDULE_ID_PREFIX)) {
    throw new Error(`schedule "${id}" is not one of ours: kimiclaw-dr schedule ids start with "${SCHEDULE_ID_PREFIX}"`);
  }
  return client.schedule.getHandle(id);
}

export async function pauseSchedule(client: Client, id: string, note = 'paused with kimiclaw-dr'): Promise<void> {
  await ownedHandle(client, id).pause(note);
}

export async function resumeSchedule(client: Client, id: string, note = 'resumed with kimiclaw-dr'): Promise<void> {
  await ownedHandle(client, id).unpause(note);
}

export async function triggerSchedule(client: Client, id: string): Promise<void> {
  await ownedHandle(client, id).trigger(ScheduleOverlapPolicy.ALLOW_ALL);
}

/** The note on schedules a region stood down with: only these are resumed when it takes over again. */
export const STAND_DOWN_NOTE_PREFIX = 'stood down by kimiclaw-dr: ';

/**
 * Pauses every schedule we own that runs (the cluster is run from another region now); an
 * operator's pause is left as it is. Returns the ids paused.
 */
export async function standDownSchedules(client: Client, why: string): Promise<string[]> {
  const paused: string[] = [];
  for (const id of await ownedScheduleIds(client)) {
    const handle = client.schedule.getHandle(id);
    if ((await handle.describe()).state.paused) continue;
    await handle.pause(`${STAND_DOWN_NOTE_PREFIX}${why}`.slice(0, 500));
    paused.push(id);
  }
  return paused;
}

/** Resumes what standDownSchedules paused (and nothing an operator paused); returns the ids. */
export async function resumeStoodDown(client: Client): Promise<string[]> {
  const resumed: string[] = [];
  for (const id of await ownedScheduleIds(client)) {
    const handle = client.schedule.getHandle(id);
    const { state } = await handle.describe();
    if (!state.paused || !state.note?.startsWith(STAND_DOWN_NOTE_PREFIX)) continue;
    await handle.unpause('resumed by kimiclaw-dr: the cluster is run from this region again');
    resumed.push(id);
  }
  return resumed;
}
