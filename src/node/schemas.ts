/** Request shapes of the node API; messages name the accepted values. */
import { z } from 'zod';
import { FINGERPRINT_VERSIONS } from '../duckdb/row-checksum';

export const MAX_BATCH_EVENTS = 10_000;
export const MAX_KIND_LENGTH = 64;

const KIND_RULE = `must be a string of 1-${MAX_KIND_LENGTH} characters`;

export const EventSchema = z.strictObject(
  {
    kind: z.string({ error: KIND_RULE }).min(1, { error: KIND_RULE }).max(MAX_KIND_LENGTH, { error: KIND_RULE }),
    // The body came from JSON.parse, so any present value is JSON; only absence is an error.
    payload: z.unknown().refine((v) => v !== undefined, { error: 'is required: any JSON value (object, array, …)' }),
  },
  {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? `unknown field(s) ${issue.keys.join(', ')}; an event has "kind" and "payload"`
        : 'must be an object { "kind": string, "payload": any JSON }',
  },
);

const BATCH_RULE = `must be an array of 1-${MAX_BATCH_EVENTS} events`;

export const AppendRequestSchema = z.strictObject(
  {
    events: z
      .array(EventSchema, { error: BATCH_RULE })
      .min(1, { error: BATCH_RULE })
      .max(MAX_BATCH_EVENTS, { error: BATCH_RULE }),
  },
  {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? `unknown field(s) ${issue.keys.join(', ')}; the body is { "events": [...] }`
        : 'the body must be a JSON object { "events": [...] }',
  },
);
export type AppendRequest = z.infer<typeof AppendRequestSchema>;

export const SnapshotRequestSchema = z.strictObject(
  {
    path: z.string({ error: 'must be an absolute file path inside the data directory' }).min(1, {
      error: 'must be an absolute file path inside the data directory',
    }),
  },
  {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? `unknown field(s) ${issue.keys.join(', ')}; the body is { "path": string }`
        : 'the body must be a JSON object { "path": string }',
  },
);
export type SnapshotRequest = z.infer<typeof SnapshotRequestSchema>;

const LSN_RULE = 'must be a non-negative integer LSN';

/** Query string of GET /stats. */
export const StatsQuerySchema = z.strictObject(
  {
    lsn: z
      .string()
      .regex(/^\d{1,15}$/, { error: LSN_RULE })
      .transform(Number)
      .optional(),
  },
  {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? `unknown query parameter(s) ${issue.keys.join(', ')}; accepted: lsn`
        : 'invalid query',
  },
);

export const DEFAULT_PAGE_EVENTS = 10_000;
export const MAX_PAGE_EVENTS = 100_000;
/** The largest LSN a query string may carry: 15 digits stay a safe integer. */
const MAX_LSN_DIGITS = 15;
const MAX_LSN = 10 ** MAX_LSN_DIGITS - 1;

const lsnParam = (meaning: string) => {
  const rule = `must be an integer 0-${MAX_LSN}${meaning}`;
  return z
    .string({ error: (issue) => (issue.input === undefined ? `is required: ${rule}` : rule) })
    .regex(new RegExp(`^\\d{1,${MAX_LSN_DIGITS}}$`), { error: rule })
    .transform(Number);
};

const LIMIT_RULE = `must be an integer 1-${MAX_PAGE_EVENTS} (rows per page; default ${DEFAULT_PAGE_EVENTS})`;

/** Query string of GET /events. */
export const EventsQuerySchema = z
  .strictObject(
    {
      afterLsn: lsnParam(' (events with lsn > afterLsn are returned)'),
      limit: z
        .string({ error: LIMIT_RULE })
        .regex(/^\d{1,6}$/, { error: LIMIT_RULE })
        .transform(Number)
        .refine((n) => n >= 1 && n <= MAX_PAGE_EVENTS, { error: LIMIT_RULE })
        .optional()
        .transform((n) => n ?? DEFAULT_PAGE_EVENTS),
      toLsn: lsnParam(', not below afterLsn (events with lsn <= toLsn are returned)').optional(),
    },
    {
      error: (issue) =>
        issue.code === 'unrecognized_keys'
          ? `unknown query parameter(s) ${issue.keys.join(', ')}; accepted: afterLsn, limit, toLsn`
          : 'invalid query',
    },
  )
  .superRefine((q, ctx) => {
    if (q.toLsn !== undefined && q.toLsn < q.afterLsn) {
      ctx.addIssue({
        code: 'custom',
        path: ['toLsn'],
        message: `must be an integer ${q.afterLsn}-${MAX_LSN} (not below afterLsn ${q.afterLsn}), got ${q.toLsn}`,
      });
    }
  });
export type EventsQuery = z.output<typeof EventsQuerySchema>;

const REASON_RULE = 'must be a string of 1-500 characters saying why (shown in /health and in refused requests)';

/** Body of POST /maintenance. */
export const MaintenanceRequestSchema = z
  .strictObject(
    {
      enabled: z.boolean({ error: 'is required: true (enter maintenance) or false (leave it)' }),
      reason: z
        .string({ error: REASON_RULE })
        .min(1, { error: REASON_RULE })
        .max(500, { error: REASON_RULE })
        .optional(),
      allowEmpty: z
        .boolean({ error: 'must be true or false (create an empty database if the file is missing)' })
        .optional(),
    },
    {
      error: (issue) =>
        issue.code === 'unrecognized_keys'
          ? `unknown field(s) ${issue.keys.join(', ')}; the body is { "enabled": boolean, "reason"?: string, "allowEmpty"?: boolean }`
          : 'the body must be a JSON object { "enabled": boolean, "reason"?: string, "allowEmpty"?: boolean }',
    },
  )
  .superRefine((body, ctx) => {
    if (body.enabled && body.allowEmpty !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['allowEmpty'],
        message: 'applies only to { "enabled": false } (reopening the file); leave it out when enabling',
      });
    }
  });
export type MaintenanceRequest = z.output<typeof MaintenanceRequestSchema>;

const EPOCH_RULE = 'must be a positive integer fencing epoch';
const epochField = z.number({ error: EPOCH_RULE }).int({ error: EPOCH_RULE }).min(1, { error: EPOCH_RULE });
const URL_RULE = 'must be an http(s) URL of a node, e.g. http://127.0.0.1:7001';
const nodeUrl = z
  .string({ error: URL_RULE })
  .refine((u) => /^https?:\/\/[^\s/]+/.test(u), { error: URL_RULE })
  .transform((u) => u.replace(/\/+$/, ''));
const nodeRef = z.strictObject({ id: z.string().min(1, { error: 'must be the node id' }), url: nodeUrl });

export const ReplicaSpecSchema = z.strictObject({
  id: z.string({ error: 'must be the replica node id' }).min(1, { error: 'must be the replica node id' }),
  url: nodeUrl,
  mode: z.enum(['sync', 'async'], { error: 'must be "sync" (acknowledged writes wait for it) or "async"' }),
});

const strictBody = (shape: string) => ({
  error: (issue: { code: string; keys?: string[] }) =>
    issue.code === 'unrecognized_keys'
      ? `unknown field(s) ${(issue.keys ?? []).join(', ')}; the body is ${shape}`
      : `the body must be a JSON object ${shape}`,
});

const LOG_EVENT_RULE = 'must be an event { id, lsn, ts, kind, payload } as GET /events returns it';
const LogEventSchema = z.strictObject(
  {
    id: z.number().int().min(0),
    lsn: z.number().int().min(1),
    ts: z.string().min(1),
    kind: z.string().min(1).max(MAX_KIND_LENGTH),
    payload: z.string(),
  },
  { error: LOG_EVENT_RULE },
);

/** Body of POST /replicate (primary → replica). */
export const ReplicateRequestSchema = z.strictObject(
  {
    epoch: epochField,
    primary: nodeRef,
    history: z.array(z.strictObject({ epoch: epochField, startLsn: z.number().int().min(0) })),
    events: z.array(LogEventSchema, { error: 'must be an array of events' }),
    /** The primary's acknowledged LSN; a primary that does not send it leaves the replica's unknown. */
    ackedLsn: z.number({ error: LSN_RULE }).int({ error: LSN_RULE }).min(0, { error: LSN_RULE }).optional(),
    /** The events follow this LSN in the primary's log; LSNs in between are holes of the history. */
    afterLsn: z.number({ error: LSN_RULE }).int({ error: LSN_RULE }).min(0, { error: LSN_RULE }).optional(),
  },
  strictBody('{ "epoch", "primary": { "id", "url" }, "history": [...], "events": [...], "ackedLsn"?, "afterLsn"? }'),
);

/** Body of POST /promote. */
export const PromoteRequestSchema = z.strictObject(
  {
    epoch: epochField,
    replicas: z.array(ReplicaSpecSchema).default([]),
    allowDegraded: z.boolean({ error: 'must be true or false' }).default(false),
    /** Where the new epoch begins (a restore's fork point); default: the node's LSN. */
    startLsn: z.number({ error: LSN_RULE }).int({ error: LSN_RULE }).min(0, { error: LSN_RULE }).optional(),
  },
  strictBody(
    '{ "epoch": number, "replicas"?: [{ "id", "url", "mode" }], "allowDegraded"?: boolean, "startLsn"?: number }',
  ),
);

/** Body of POST /demote. */
export const DemoteRequestSchema = z.strictObject(
  {
    epoch: epochField,
    primary: nodeRef.optional(),
    drainMs: z.number().int().min(0).max(60_000, { error: 'must be 0-60000 ms' }).default(0),
  },
  strictBody('{ "epoch": number, "primary"?: { "id", "url" }, "drainMs"?: number }'),
);

const BOOTSTRAP_RULE = 'must be a list of replica ids to send a snapshot to next, e.g. ["node2"]';

/**
 * Body of POST /replication (primary: which replicas, whether writes may go on without one, which
 * replicas get a snapshot next instead of the log).
 */
export const ReplicationRequestSchema = z.strictObject(
  {
    epoch: epochField,
    replicas: z.array(ReplicaSpecSchema).optional(),
    allowDegraded: z.boolean({ error: 'must be true or false' }).optional(),
    bootstrap: z
      .array(z.string({ error: BOOTSTRAP_RULE }).min(1, { error: BOOTSTRAP_RULE }), { error: BOOTSTRAP_RULE })
      .min(1, { error: BOOTSTRAP_RULE })
      .optional(),
  },
  strictBody(
    '{ "epoch": number, "replicas"?: [{ "id", "url", "mode" }], "allowDegraded"?: boolean, "bootstrap"?: [string] }',
  ),
);

/** Body of POST /initialize (an empty node: create the database in this role, at this epoch). */
export const InitializeRequestSchema = z.strictObject(
  {
    role: z.enum(['primary', 'replica'], {
      error: 'must be "primary" (the first node of a new cluster) or "replica" (fed by its primary)',
    }),
    epoch: epochField,
  },
  strictBody('{ "role": "primary" | "replica", "epoch": number }'),
);

const nullableCount = z.number().int().nullable();

/** Header x-kimiclaw-snapshot of POST /replication/snapshot (JSON). */
export const SnapshotMetaSchema = z.strictObject(
  {
    epoch: epochField,
    primary: nodeRef,
    history: z.array(z.strictObject({ epoch: epochField, startLsn: z.number().int().min(0) })),
    lsn: z.number().int().min(0),
    ackedLsn: z.number().int().min(0).optional(),
    fingerprint: z.strictObject({
      rows: z.number().int().min(0),
      minId: nullableCount,
      maxId: nullableCount,
      maxLsn: nullableCount,
      checksum: z.string().regex(/^-?\d+$/),
      /** A primary that does not say sent a version-1 checksum (docs/fingerprint.md). */
      fingerprintVersion: z.literal(FINGERPRINT_VERSIONS).default(1),
    }),
  },
  strictBody('{ "epoch", "primary", "history", "lsn", "ackedLsn"?, "fingerprint" }'),
);
