/** What the drill's checks know of a cluster, read from the configuration. */
import { clusterOfConfig } from '../cluster';
import { type Config, homeRegion } from '../config';
import type { DrillTopology } from './input';

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
  };
}
