/**
 * The scrub: every --scrub-interval the node reads its database file's blocks from disk, within an
 * I/O budget, and checks each block in use against its stored checksum (src/duckdb/blocks.ts). A
 * query would not do: DuckDB checks a block only when it reads it from disk, and most of a running
 * node's reads hit its buffer pool.
 *
 * The file is read while DuckDB writes it. DuckDB writes it only inside our write lock (commits,
 * checkpoints, truncations all hold it), and never rewrites a block that the current header says is
 * in use, so a mismatch can only be a race with a checkpoint or real damage: before calling it
 * damage, the block is read again with writes paused, against the header of that moment (a block
 * freed or cut off meanwhile is no longer ours to judge). Only that second reading turns the node
 * damaged; a clean pass never takes the lock.
 *
 * Measured (bench/scrub.ts) against the alternative, a consistent snapshot verified by DuckDB in a
 * child process: see docs/node-api.md, "The scrub".
 */
import { open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BLOCK_ALLOC_SIZE,
  CorruptBlockError,
  type FileLayout,
  UnsupportedFormatError,
  blockBuffer,
  blockOffset,
  checkBlock,
  readLayout,
} from '../duckdb/blocks';
import type { Logger } from './log';
import { errorMessage } from './log';

/** What the scrub needs from the store that owns the file. */
export interface ScrubSubject {
  path: string;
  /**
   * Changes whenever another file is opened at the path; undefined while none is open or one is
   * about to close (the pass then stops at the next block).
   */
  generation(): number | undefined;
  /** Runs fn with writes paused while the file of `generation` is still the open one, else undefined. */
  withWritesPaused<T>(generation: number, fn: () => Promise<T>): Promise<T | undefined>;
  /**
   * Runs the pass, which holds a descriptor on the file: whoever closes the file waits for it
   * (DuckDB's close is checked against every descriptor this process has on the file).
   */
  hold<T>(pass: () => Promise<T>): Promise<T>;
}

export type ScrubOutcome =
  | { kind: 'ok'; bytesChecked: number; blocksChecked: number }
  | { kind: 'damaged'; reason: string; bytesChecked: number }
  | { kind: 'refused'; reason: string }
  | { kind: 'skipped'; bytesChecked: number };

/** Paces reads to bytesPerSecond (0: as fast as the disk goes). */
class Budget {
  private readonly started = performance.now();
  private used = 0;
  constructor(private readonly bytesPerSecond: number) {}

  async take(bytes: number): Promise<void> {
    this.used += bytes;
    if (this.bytesPerSecond <= 0) return;
    const wait = this.started + (this.used / this.bytesPerSecond) * 1000 - performance.now();
    if (wait > 0) await sleep(wait);
  }
}

/** A file nobody writes (a snapshot copy): checked as it is, no lock needed. */
export function staticSubject(path: string): ScrubSubject {
  return { path, generation: () => 0, withWritesPaused: (_generation, fn) => fn(), hold: (pass) => pass() };
}

/** One pass over the file of subject; see the file comment for how a mismatch is judged. */
export function scrubFile(subject: ScrubSubject, bytesPerSecond: number): Promise<ScrubOutcome> {
  return subject.hold(() => scrubPass(subject, bytesPerSecond));
}

async function scrubPass(subject: ScrubSubject, bytesPerSecond: number): Promise<ScrubOutcome> {
  const generation = subject.generation();
  if (generation === undefined) return { kind: 'skipped', bytesChecked: 0 };
  const handle = await open(subject.path, 'r');
  let bytesChecked = 0;
  let blocksChecked = 0;
  const damaged = (err: unknown): ScrubOutcome => ({ kind: 'damaged', reason: errorMessage(err), bytesChecked });
  try {
    let layout: FileLayout;
    try {
      layout = await readLayout(handle, subject.path);
    } catch (err) {
      if (err instanceof UnsupportedFormatError) return { kind: 'refused', reason: err.message };
      if (!(err instanceof CorruptBlockError)) throw err;
      // A header being rewritten by a checkpoint: read it again with writes paused.
      try {
        const again = await subject.withWritesPaused(generation, () => readLayout(handle, subject.path));
        if (!again) return { kind: 'skipped', bytesChecked };
        layout = again;
      } catch (second) {
        if (second instanceof CorruptBlockError) return damaged(second);
        throw second;
      }
    }
    const budget = new Budget(bytesPerSecond);
    const buffer = blockBuffer();
    for (let id = 0; id < layout.blockCount; id++) {
      if (layout.free.has(id)) continue;
      const first = await checkBlock(handle, id, buffer);
      bytesChecked += BLOCK_ALLOC_SIZE;
      blocksChecked++;
      if (first !== 'ok') {
        let verdict: 'ok' | 'bad' | 'short' | 'free' | undefined;
        try {
          verdict = await subject.withWritesPaused(generation, async () => {
            const now = await readLayout(handle, subject.path);
            if (id >= now.blockCount || now.free.has(id)) return 'free';
            return checkBlock(handle, id, buffer);
          });
        } catch (err) {
          if (err instanceof CorruptBlockError) return damaged(err);
          throw err;
        }
        if (verdict === undefined) return { kind: 'skipped', bytesChecked };
        if (verdict === 'bad' || verdict === 'short') {
          const detail = verdict === 'bad' ? 'its checksum does not match' : 'the file ends inside it';
          return damaged(new CorruptBlockError(subject.path, blockOffset(id), `block ${id}`, detail));
        }
      }
      if (subject.generation() !== generation) return { kind: 'skipped', bytesChecked };
      await budget.take(BLOCK_ALLOC_SIZE);
    }
    return { kind: 'ok', bytesChecked, blocksChecked };
  } finally {
    await handle.close();
  }
}

export interface ScrubStatus {
  /** When the last finished pass started (ISO), null before the first. */
  lastRunAt: string | null;
  lastDurationMs: number | null;
  bytesChecked: number;
  /**
   * true: every block in use matched; false: the pass found damage or could not check the file
   * (`error` says why). null before the first pass. The node's status is the authority on damage.
   */
  ok: boolean | null;
  nextAt: string | null;
  error?: string;
}

export interface ScrubberOptions {
  /** Between the end of a pass and the start of the next. */
  intervalMs: number;
  /** I/O budget of a pass; 0 is unlimited. */
  bytesPerSecond: number;
  log: Logger;
  /** Damage found (with writes paused, so it is not a race with a checkpoint). */
  onDamage: (reason: string) => void;
}

export class Scrubber {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private running: Promise<void> | undefined;
  private state: ScrubStatus = { lastRunAt: null, lastDurationMs: null, bytesChecked: 0, ok: null, nextAt: null };

  constructor(
    private readonly subject: ScrubSubject,
    private readonly options: ScrubberOptions,
  ) {}

  status(): ScrubStatus {
    return { ...this.state };
  }

  start(): void {
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** Runs a pass now (unless one is running) and schedules the next. */
  async runNow(): Promise<ScrubStatus> {
    clearTimeout(this.timer);
    this.running ??= this.pass().finally(() => {
      this.running = undefined;
      this.schedule();
    });
    await this.running;
    return this.status();
  }

  private schedule(): void {
    if (this.stopped) return;
    const at = Date.now() + this.options.intervalMs;
    this.state.nextAt = new Date(at).toISOString();
    this.timer = setTimeout(() => void this.runNow(), this.options.intervalMs);
    this.timer.unref();
  }

  private async pass(): Promise<void> {
    const startedAt = new Date();
    const started = performance.now();
    this.state.nextAt = null;
    let outcome: ScrubOutcome;
    try {
      outcome = await scrubFile(this.subject, this.options.bytesPerSecond);
    } catch (err) {
      outcome = { kind: 'refused', reason: `the scrub could not read ${this.subject.path}: ${errorMessage(err)}` };
    }
    if (outcome.kind === 'skipped') return;
    const durationMs = Math.round(performance.now() - started);
    this.state = {
      lastRunAt: startedAt.toISOString(),
      lastDurationMs: durationMs,
      bytesChecked: outcome.kind === 'refused' ? 0 : outcome.bytesChecked,
      ok: outcome.kind === 'ok',
      nextAt: null,
      ...(outcome.kind === 'ok' ? {} : { error: outcome.reason }),
    };
    if (outcome.kind === 'damaged') {
      this.options.log('scrub_found_damage', { reason: outcome.reason, durationMs });
      this.options.onDamage(outcome.reason);
    } else if (outcome.kind === 'refused') {
      this.options.log('scrub_refused', { reason: outcome.reason });
    } else {
      this.options.log('scrub_done', { bytesChecked: outcome.bytesChecked, blocks: outcome.blocksChecked, durationMs });
    }
  }
}
