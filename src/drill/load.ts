/**
 * Starts and stops a drill's write load (src/drill/load-main.ts) as a detached process: a worker
 * that is killed mid-drill does not take the load, or its ledger, with it.
 */
import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NodeToken } from '../node-token';
import type { ConfigCenterOptions } from '../config-center';

export interface LoadSpec {
  configCenter: ConfigCenterOptions;
  /** The primary record's key, /services/<cluster>/primary. */
  key: string;
}

export interface LoadOptions {
  /** Its files: spec.json, ledger.jsonl, load.log. */
  dir: string;
  spec: LoadSpec;
  /** A token the nodes accept for events; handed over in the environment. */
  token: NodeToken | undefined;
  batch?: number;
  pauseMs?: number;
}

/** Where a load in `dir` keeps its ledger. */
export const ledgerPath = (dir: string) => join(dir, 'ledger.jsonl');

export async function startLoad(options: LoadOptions): Promise<{ pid: number; ledger: string }> {
  await mkdir(options.dir, { recursive: true });
  const specFile = join(options.dir, 'spec.json');
  await writeFile(specFile, JSON.stringify(options.spec), { mode: 0o600 });
  const logFile = join(options.dir, 'load.log');
  const log = openSync(logFile, 'a', 0o600);
  const ledger = ledgerPath(options.dir);
  const args = ['--import', 'tsx', join(__dirname, 'load-main.ts'), '--spec', specFile, '--ledger', ledger];
  if (options.batch) args.push('--batch', String(options.batch));
  if (options.pauseMs) args.push('--pause-ms', String(options.pauseMs));
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.KIMICLAW_NODE_TOKEN;
  if (options.token) env.KIMICLAW_NODE_TOKEN = options.token.authorization().replace(/^Bearer /, '');
  const child = spawn(process.execPath, args, {
    cwd: join(__dirname, '..', '..'),
    env,
    detached: true,
    stdio: ['ignore', 'pipe', log],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error('the drill load process did not start');
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the drill load did not start in 60 s (see ${logFile})`)), 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the drill load exited with ${code} (see ${logFile})`));
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
  return { pid, ledger };
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
