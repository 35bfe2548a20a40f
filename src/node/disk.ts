/**
 * Free space of the file system holding the node's data directory, for GET /health: a disk that is
 * filling up is reported (`low`) before DuckDB fails a checkpoint on it and the node turns
 * unwritable. Measured with statfs at each /health and every few seconds (for the disk_low log
 * line); the free bytes are those an unprivileged writer may still use (f_bavail).
 */
import { statfs } from 'node:fs/promises';
import type { Logger } from './log';
import { errorMessage } from './log';

export interface DiskStatus {
  path: string;
  freeBytes: number;
  totalBytes: number;
  /** Free space is under the threshold (minFreeBytes, else the smaller of 256 MiB and 5 %). */
  low: boolean;
}

const DEFAULT_FLOOR_BYTES = 256 * 1024 * 1024;
const DEFAULT_FLOOR_SHARE = 0.05;

/** The free-space floor: the configured one, else min(256 MiB, 5 % of the file system). */
export function lowThreshold(totalBytes: number, minFreeBytes?: number): number {
  return minFreeBytes ?? Math.min(DEFAULT_FLOOR_BYTES, Math.floor(totalBytes * DEFAULT_FLOOR_SHARE));
}

export async function measureDisk(path: string, minFreeBytes?: number): Promise<DiskStatus> {
  const s = await statfs(path);
  const freeBytes = s.bavail * s.bsize;
  const totalBytes = s.blocks * s.bsize;
  return { path, freeBytes, totalBytes, low: freeBytes < lowThreshold(totalBytes, minFreeBytes) };
}

export class DiskWatcher {
  private timer: NodeJS.Timeout | undefined;
  private wasLow = false;

  constructor(
    readonly path: string,
    private readonly options: { minFreeBytes?: number; everyMs?: number; log: Logger },
  ) {}

  /** Measures now; undefined when statfs fails (logged). */
  async refresh(): Promise<DiskStatus | undefined> {
    try {
      const status = await measureDisk(this.path, this.options.minFreeBytes);
      if (status.low !== this.wasLow) {
        this.wasLow = status.low;
        this.options.log(status.low ? 'disk_low' : 'disk_ok', { ...status });
      }
      return status;
    } catch (err) {
      this.options.log('disk_check_failed', { path: this.path, error: errorMessage(err) });
      return undefined;
    }
  }

  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.options.everyMs ?? 2_000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
