/**
 * Faults a drill injects for real, on the host of the node they hit (the node's task queue): a
 * signal to the node process, found by its pid file (src/node/pid-file.ts). SIGKILL: the node is
 * gone; SIGSTOP: it hangs, connections stay open and nothing is refused; SIGCONT: it runs again.
 * And a failing disk: bytes of a block in use of the node's database file overwritten in place,
 * behind the running node's back (its scrub must find them).
 */
import { join } from 'node:path';
import { damageBlockInUse } from '../dev/damage';
import { InputProblem } from '../errors';
import { runningNodePid } from '../node/pid-file';
import type { ActivityDeps } from './index';

export const NODE_SIGNALS = ['SIGKILL', 'SIGSTOP', 'SIGCONT'] as const;
export type NodeSignal = (typeof NODE_SIGNALS)[number];

export function createFaultActivities({ config, node }: Pick<ActivityDeps, 'config'> & { node: string }) {
  const dataDir = config.databases.flatMap((d) => d.nodes).find((n) => n.id === node)?.dataDir;

  /** Sends `signal` to the node process; answers its pid and when (epoch ms, this host's clock). */
  async function signalNode(input: { node: string; signal: NodeSignal }): Promise<{ pid: number; at: number }> {
    if (input.node !== node || !dataDir) {
      throw new InputProblem('node', `this is the task queue of node ${node}, not of ${input.node}`);
    }
    if (!NODE_SIGNALS.includes(input.signal)) {
      throw new InputProblem('signal', `"${String(input.signal)}" is not one of ${NODE_SIGNALS.join(', ')}`);
    }
    const found = await runningNodePid(dataDir);
    if ('none' in found) throw new InputProblem('node', found.none);
    const at = Date.now();
    process.kill(found.pid, input.signal);
    return { pid: found.pid, at };
  }

  /** Overwrites 64 KiB of a block in use of the node's file of `database`; answers which and when. */
  async function damageNodeFile(input: {
    node: string;
    database: string;
  }): Promise<{ at: number; path: string; blockId: number; bytes: number }> {
    if (input.node !== node || !dataDir) {
      throw new InputProblem('node', `this is the task queue of node ${node}, not of ${input.node}`);
    }
    const path = join(dataDir, `${input.database}.duckdb`);
    const at = Date.now();
    const damage = await damageBlockInUse(path);
    return { at, path, blockId: damage.blockId, bytes: damage.bytes };
  }

  return { signalNode, damageNodeFile };
}
