/**
 * Like systemd for the nodes `npm start` and a drill's private stack run: a node process that
 * exits is started again a few seconds later (and rejoins as a replica through the monitor's
 * recoverNode when it was failed over meanwhile).
 */
import type { NodeProcess } from './node-process';

export function superviseNodes(
  nodes: readonly NodeProcess[],
  options: {
    delayMs: number;
    /** Starts the node (and says how it came up); a failure is left to the next round. */
    start: (node: NodeProcess) => Promise<void>;
    say?: (line: string) => void;
  },
): { stop: () => void; hold: (id: string) => void; release: (id: string) => void } {
  let stopped = false;
  const restarting = new Set<string>();
  // Nodes whose host is "gone" for now (a drill's outage): not started again until released.
  const held = new Set<string>();
  const timers = new Set<NodeJS.Timeout>();
  const watch = setInterval(() => {
    for (const node of nodes) {
      if (stopped || node.running || restarting.has(node.id) || held.has(node.id)) continue;
      restarting.add(node.id);
      options.say?.(`${node.id} exited; starting it again in ${options.delayMs / 1000} s`);
      const timer = setTimeout(() => {
        timers.delete(timer);
        if (stopped) return;
        void options
          .start(node)
          .catch(() => undefined)
          .finally(() => restarting.delete(node.id));
      }, options.delayMs);
      timers.add(timer);
    }
  }, 1_000);
  return {
    hold: (id) => void held.add(id),
    release: (id) => void held.delete(id),
    stop: () => {
      stopped = true;
      clearInterval(watch);
      for (const t of timers) clearTimeout(t);
    },
  };
}
