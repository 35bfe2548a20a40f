/**
 * `--wait`: follow a backup to its end. On a terminal, a progress bar with bytes and rate of the
 * current transfer; elsewhere, one line per phase change.
 */
import { SingleBar } from 'cli-progress';
import type { KimiclawDr, BackupResult } from '../client';
import { formatBytes } from './format';

export async function waitWithProgress(dr: KimiclawDr, workflowId: string, show: boolean): Promise<BackupResult> {
  const result = dr.backupResult(workflowId);
  if (!show) return result;
  const tty = process.stderr.isTTY;
  const bar = new SingleBar({
    format: ' {phase} |{bar}| {percentage}% {done}/{total} {rate}',
    barsize: 30,
    hideCursor: true,
    stream: process.stderr,
    noTTYOutput: false,
  });
  let barStarted = false;
  let lastPhase = '';
  let lastSample: { at: number; bytes: number } | undefined;
  let rate = '';
  let finished = false;
  void result.finally(() => (finished = true)).catch(() => undefined);

  while (!finished) {
    const progress = await dr.backupProgress(workflowId).catch(() => undefined);
    const phase = progress?.status?.phase ?? progress?.state ?? '';
    if (phase !== lastPhase) {
      if (!tty || !barStarted) process.stderr.write(`${progress?.status?.backupId ?? workflowId}: ${phase}\n`);
      lastPhase = phase;
    }
    const transfer = progress?.transfer;
    if (tty && transfer?.phase === 'upload' && transfer.bytesTotal > 0) {
      const now = Date.now();
      if (lastSample && now > lastSample.at) {
        rate = `${formatBytes(((transfer.bytesDone - lastSample.bytes) * 1000) / (now - lastSample.at))}/s`;
      }
      lastSample = { at: now, bytes: transfer.bytesDone };
      const payload = { phase, done: formatBytes(transfer.bytesDone), total: formatBytes(transfer.bytesTotal), rate };
      if (!barStarted) {
        bar.start(transfer.bytesTotal, transfer.bytesDone, payload);
        barStarted = true;
      } else bar.update(transfer.bytesDone, payload);
    }
    await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, 500))]);
  }
  if (barStarted) {
    bar.update(bar.getTotal());
    bar.stop();
  }
  return result;
}
