/**
 * Starts and stops a drill's write load (src/drill/load-main.ts) as a detached process (detached.ts):
 * a worker that is killed mid-drill does not take the load, or its ledger, with it.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { NodeToken } from '../node-token';
import type { ConfigCenterOptions } from '../config-center';
import { startDetached, stopDetached } from './detached';

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
  const ledger = ledgerPath(options.dir);
  const args = ['--spec', specFile, '--ledger', ledger];
  if (options.batch) args.push('--batch', String(options.batch));
  if (options.pauseMs) args.push('--pause-ms', String(options.pauseMs));
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.KIMICLAW_NODE_TOKEN;
  if (options.token) env.KIMICLAW_NODE_TOKEN = options.token.authorization().replace(/^Bearer /, '');
  const { pid } = await startDetached({
    name: 'the drill load',
    script: 'load-main.ts',
    args,
    env,
    logFile: join(options.dir, 'load.log'),
    readyEvent: 'load-started',
    timeoutMs: 60_000,
  });
  return { pid, ledger };
}

/** SIGTERM (it finishes the write in flight), then SIGKILL after `graceMs`; resolves once it is gone. */
export async function stopLoad(pid: number, graceMs = 10_000): Promise<void> {
  await stopDetached(pid, graceMs);
}
