/**
 * A drill's helper processes (its write load, its private stack) run detached from the worker
 * that started them: a worker killed mid-drill takes neither the evidence nor the stack with it.
 * Started with tsx from the repository, their output in a log file; started when they print a
 * JSON line with the `ready` event (its fields are the answer); stopped with SIGTERM, then SIGKILL.
 */
import { spawn } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

export interface DetachedOptions {
  /** What it is, for errors: "the drill load". */
  name: string;
  /** The TypeScript entry, relative to this directory. */
  script: string;
  args: string[];
  /** Its environment (secrets go here, never in args). */
  env: NodeJS.ProcessEnv;
  /** Where everything it prints to stderr goes (and stdout after the ready line). */
  logFile: string;
  /** The `event` of the JSON line it prints once ready. */
  readyEvent: string;
  timeoutMs: number;
}

export async function startDetached(
  options: DetachedOptions,
): Promise<{ pid: number; ready: Record<string, unknown> }> {
  const log = openSync(options.logFile, 'a', 0o600);
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, options.script), ...options.args], {
    cwd: join(__dirname, '..', '..'),
    env: options.env,
    detached: true,
    stdio: ['ignore', 'pipe', log],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${options.name} did not start`);
  const seconds = Math.round(options.timeoutMs / 1000);
  try {
    const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${options.name} did not start in ${seconds} s (see ${options.logFile})`)),
        options.timeoutMs,
      );
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        // Its last words say why (the log file may be gone with what it removed on the way out).
        const last = lastLines(options.logFile, 3);
        reject(
          new Error(`${options.name} exited with ${code ?? signal}${last ? `: ${last}` : ''} (see ${options.logFile})`),
        );
      });
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (!line.includes(`"${options.readyEvent}"`)) return;
        clearTimeout(timer);
        resolve(JSON.parse(line) as Record<string, unknown>);
      });
    });
    return { pid, ready };
  } catch (err) {
    await stopDetached(pid, 10_000);
    throw err;
  } finally {
    child.stdout?.destroy();
    child.removeAllListeners('exit');
    child.unref();
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM (it stops what it runs), then SIGKILL after `graceMs`; resolves once it is gone. */
export async function stopDetached(pid: number, graceMs: number): Promise<void> {
  if (!alive(pid)) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (alive(pid) && Date.now() < deadline) await sleep(50);
  if (alive(pid)) process.kill(pid, 'SIGKILL');
  while (alive(pid)) await sleep(50);
}

function lastLines(file: string, n: number): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-n).join(' | ');
  } catch {
    return '';
  }
}
