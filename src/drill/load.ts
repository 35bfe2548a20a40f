/**
 * Starts and stops a drill's write load (src/drill/load-main.ts) as a detached process: a worker
 * that is killed mid-drill does not take the load, or its ledger, with it.
 */
import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

export interface LoadOptions {
  ledger: string;
  /** Where its output goes (appended). */
  logFile: string;
  /** DR_CONFIG of the cluster it writes to. */
  configFile: string;
  cluster?: string;
  batch?: number;
  pauseMs?: number;
}

export async function startLoad(options: LoadOptions): Promise<{ pid: number }> {
  const log = openSync(options.logFile, 'a', 0o600);
  const args = ['--import', 'tsx', join(__dirname, 'load-main.ts'), '--ledger', options.ledger];
  if (options.cluster) args.push('--cluster', options.cluster);
  if (options.batch) args.push('--batch', String(options.batch));
  if (options.pauseMs) args.push('--pause-ms', String(options.pauseMs));
  const child = spawn(process.execPath, args, {
    cwd: join(__dirname, '..', '..'),
    env: { ...process.env, DR_CONFIG: options.configFile },
    detached: true,
    stdio: ['ignore', 'pipe', log],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error('the drill load process did not start');
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the drill load did not start in 60 s (see ${options.logFile})`)),
      60_000,
    );
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the drill load exited with ${code} (see ${options.logFile})`));
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.includes('"load-started"')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  child.stdout?.destroy();
  child.removeAllListeners('exit');
  child.unref();
  return { pid };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM (it finishes the write in flight), then SIGKILL after `graceMs`; resolves once it is gone. */
export async function stopLoad(pid: number, graceMs = 10_000): Promise<void> {
  if (!alive(pid)) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (alive(pid) && Date.now() < deadline) await sleep(50);
  if (alive(pid)) process.kill(pid, 'SIGKILL');
  while (alive(pid)) await sleep(50);
}
