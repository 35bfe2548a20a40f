/** Inputs of failover, switchover, recoverNode and monitorCluster: plain JSON for the Temporal UI. */
import { z } from 'zod';
import { NameSchema } from '../domain';

const NODE_RULE = 'must be the id of a node of the cluster, as in the config';
const nodeId = z.string({ error: NODE_RULE }).min(1, { error: NODE_RULE });
const reason = z.string().min(1).max(500).optional();
/**
 * Set by an operation that holds the cluster's topology lease and starts this one itself (a
 * restore that fails over first, a drill): "<workflow id>/<run id>" of the holder. The lease must
 * be held by it; otherwise the change is refused.
 */
const underLease = z.string().min(3).max(400).optional();

export const FailoverInputSchema = z
  .object({
    /** The database whose nodes form the cluster; default: the first with several nodes. */
    cluster: NameSchema.optional(),
    failedNode: nodeId,
    reason,
    /** Fail over even if the node still answers as primary, or no replica can be shown to hold every acknowledged write. */
    force: z.boolean().default(false),
    /** Set by monitorCluster: when the first failed probe was (epoch ms), and what it saw. */
    detectedAt: z.number().int().positive().optional(),
    evidence: z.string().optional(),
    underLease,
  })
  .strict();
export type FailoverInput = z.input<typeof FailoverInputSchema>;

export const SwitchoverInputSchema = z
  .object({
    cluster: NameSchema.optional(),
    /** The replica to promote; default: the most advanced in-sync one. */
    to: nodeId.optional(),
    reason,
    underLease,
  })
  .strict();
export type SwitchoverInput = z.input<typeof SwitchoverInputSchema>;

export const RecoverNodeInputSchema = z.object({ cluster: NameSchema.optional(), node: nodeId }).strict();
export type RecoverNodeInput = z.input<typeof RecoverNodeInputSchema>;

export const MonitorInputSchema = z.object({ cluster: NameSchema.optional() }).strict();
export type MonitorInput = z.input<typeof MonitorInputSchema>;

/** One workflow id per cluster: two failovers of one cluster can never run at once. */
export const failoverWorkflowId = (cluster: string) => `failover-${cluster}`;
export const monitorWorkflowId = (cluster: string) => `monitor-${cluster}`;
export const recoverWorkflowId = (cluster: string, node: string) => `recover-${cluster}-${node}`;
/** Switchovers are planned, so several may be started; the topology lease lets one run at a time. */
export const switchoverWorkflowId = (cluster: string, at: Date) =>
  `switchover-${cluster}-${at.toISOString().replace(/[-:.]/g, '')}`;

/**
 * Workflow task timeout of the monitor and the failovers it starts. A worker frozen with its zone
 * may hold a long poll and take a workflow task it never answers: the task goes to another worker
 * after this, not after Temporal's default 10 s.
 */
export const FAILOVER_TASK_TIMEOUT = '2s';
