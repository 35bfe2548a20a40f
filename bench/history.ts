/** Per-step timings of a finished workflow, read from its history. */
import type { WorkflowHandle } from '@temporalio/client';

/** Seconds from schedule to completion of each activity type (summed when it ran several times). */
export async function activityDurations(handle: WorkflowHandle): Promise<Record<string, number>> {
  const history = await handle.fetchHistory();
  const scheduled = new Map<string, { type: string; at: number }>();
  const durations: Record<string, number> = {};
  for (const event of history.events ?? []) {
    const at = Number(event.eventTime?.seconds ?? 0) + (event.eventTime?.nanos ?? 0) / 1e9;
    const s = event.activityTaskScheduledEventAttributes;
    if (s) scheduled.set(String(event.eventId), { type: s.activityType?.name ?? '?', at });
    const c = event.activityTaskCompletedEventAttributes;
    const from = c && scheduled.get(String(c.scheduledEventId));
    if (from) durations[from.type] = (durations[from.type] ?? 0) + (at - from.at);
  }
  return durations;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** "step 1.2 s, step 0.4 s" with the median of each step over the rounds. */
export function medianSteps(rounds: Array<Record<string, number>>): string {
  const steps = [...new Set(rounds.flatMap((t) => Object.keys(t)))];
  return steps.map((s) => `${s} ${median(rounds.map((t) => t[s] ?? 0)).toFixed(1)} s`).join(', ');
}
