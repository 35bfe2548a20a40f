/** Request shapes of the node API; messages name the accepted values. */
import { z } from 'zod';

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
