/**
 * The node's process id, kept beside its data (`<dataDir>/node.pid`) for the host's worker: a
 * drill injects a fault as a real signal to the node process. A pid file a killed node left may
 * name a process that has since reused the number, so a reader checks that the process is still
 * a node of that data directory before signalling it.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

export const NODE_PID_FILE = 'node.pid';

/** The pid of the node running on `dataDir`, or why there is none. */
export async function runningNodePid(dataDir: string): Promise<{ pid: number } | { none: string }> {
  const file = join(dataDir, NODE_PID_FILE);
  const text = await readFile(file, 'utf8').catch(() => undefined);
  const pid = Number(text?.trim());
  if (!text || !Number.isSafeInteger(pid) || pid <= 1) return { none: `no node process is recorded in ${file}` };
  // Linux: the process's command line names the data directory it was started on.
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined);
  if (cmdline === undefined) return { none: `the node process ${pid} recorded in ${file} is not running` };
  const args = cmdline.split('\0');
  const at = args.indexOf('--data-dir');
  const named = args[at + 1];
  if (at < 0 || named === undefined || (named !== dataDir && resolve(named) !== resolve(dataDir))) {
    return { none: `process ${pid} recorded in ${file} is not the node of ${dataDir} (the number was reused)` };
  }
  return { pid };
}
