/**
 * `--wait`: follow a workflow to its end. The current step is the running activity; its heartbeat
 * carries bytes done and total. On a terminal that is a progress bar with rate; elsewhere, one
 * line per step.
 */
import type { Client } from '@temporalio/client';
import { SingleBar } from 'cli-progress';
import type { TransferProgress } from '../activities';
import { formatBytes } from './format';

interface Step {
  name: string;
  transfer?: TransferProgress;
}

async function currentStep(client: Client, workflowId: string): Promise<Step | undefined> {
  const description = await client.workflow.getHandle(workflowId).describe();
  const pending = description.raw.pendingActivities?.[0];
  if (!pending) return undefined;
  const first = pending.heartbeatDetails?.payloads?.[0];
  const transfer = first
    ? client.options.loadedDataConverter.payloadConverter.fromPayload<TransferProgress>(first)
    : undefined;
  return { name: pending.activityType?.name ?? 'working', transfer };
}

export async function followWorkflow<T>(client: Client, workflowId: string, show: boolean): Promise<T> {
  const result = client.workflow.getHandle(workflowId).result() as Promise<T>;
  if (!show) return result;
  const tty = process.stderr.isTTY;
  const bar = new SingleBar({
    format: ' {step} |{bar}| {percentage}% {done}/{total} {rate}',
    barsize: 30,
    hideCursor: true,
    stream: process.stderr,
  });
  let barOn = false;
  let lastStep = '';
  let sample: { at: number; bytes: number } | undefined;
  let rate = '';
  let finished = false;
  void result.finally(() => (finished = true)).catch(() => undefined);

  while (!finished) {
    const step = await currentStep(client, workflowId).catch(() => undefined);
    if (step && step.name !== lastStep) {
      if (barOn) {
        bar.stop();
        barOn = false;
      }
      process.stderr.write(`${workflowId}: ${step.name}\n`);
      lastStep = step.name;
      sample = undefined;
    }
    const t = step?.transfer;
    if (tty && t && t.bytesTotal > 0) {
      const now = Date.now();
      if (sample && now > sample.at)
        rate = `${formatBytes(((t.bytesDone - sample.bytes) * 1000) / (now - sample.at))}/s`;
      sample = { at: now, bytes: t.bytesDone };
      const payload = { step: step.name, done: formatBytes(t.bytesDone), total: formatBytes(t.bytesTotal), rate };
      if (!barOn) {
        bar.start(t.bytesTotal, t.bytesDone, payload);
        barOn = true;
      } else bar.update(Math.min(t.bytesDone, t.bytesTotal), payload);
    }
    await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, 500))]);
  }
  if (barOn) bar.stop();
  return result;
}
