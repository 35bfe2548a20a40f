/** What the drill's checks know of a cluster, read from the configuration. */
import { clusterOfConfig } from '../cluster';
import { type Config, homeRegion } from '../config';
import type { DrillTopology } from './input';

/** Set for the worker of a drill's private stack: the stack's directory (its Temporal may be stopped). */
export const STACK_ENV = 'KIMICLAW_DRILL_STACK';
/** Set with it: the process id of the stack's own process, which stops and starts its Temporal. */
export const STACK_PID_ENV = 'KIMICLAW_DRILL_STACK_PID';

export function drillTopology(config: Config, cluster?: string): DrillTopology {
  const db = clusterOfConfig(config, cluster);
  const home = homeRegion(config);
  const here = db.nodes.filter((n) => home === undefined || n.region === undefined || n.region === home);
  return {
    cluster: db.name,
    zones: [...new Set(here.flatMap((n) => (n.zone === undefined ? [] : [n.zone])))],
    standbyRegions: (config.regions?.standby ?? []).map((r) => r.name),
    productionScenarios: config.drills.production.scenarios,
    objectives: config.drills.objectives,
    // A drill's private stack tells its worker where it is (src/drill/stack.ts).
    privateStack: Boolean(process.env[STACK_ENV]),
  };
}
