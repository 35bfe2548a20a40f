/**
 * Workflow inputs: plain JSON objects an operator can paste into the Temporal UI. Parsed with zod
 * inside the workflow; a bad one fails at once, naming the field and the accepted values
 * (docs/architecture.md, rule 8). Pure: workflow code imports it.
 */
import { z } from 'zod';
import { DEFAULT_DATABASE, NameSchema, TierSchema } from '../domain';

export const BackupInputSchema = z
  .object({
    database: NameSchema.default(DEFAULT_DATABASE),
    tier: TierSchema,
    reason: z.string().max(500).optional(),
    /** Node to snapshot; defaults to the database's primary. */
    node: NameSchema.optional(),
  })
  .strict();

export type BackupInput = z.input<typeof BackupInputSchema>;
export type ParsedBackupInput = z.output<typeof BackupInputSchema>;

/** One line per problem: `tier: "L4" is not accepted; accepted values: "L1", "L2", "L3"`. */
export function describeInputIssues(error: z.ZodError, input: unknown): string[] {
  return error.issues.map((issue) => {
    const path = issue.path.map(String).join('.') || '(input)';
    const received = valueAt(input, issue.path);
    if (received === undefined && (issue.code === 'invalid_value' || issue.code === 'invalid_type')) {
      const accepted =
        issue.code === 'invalid_value'
          ? `; accepted values: ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`
          : '';
      return `${path}: is required${accepted}`;
    }
    if (issue.code === 'invalid_value') {
      const accepted = issue.values.map((v) => JSON.stringify(v)).join(', ');
      return `${path}: ${JSON.stringify(received)} is not accepted; accepted values: ${accepted}`;
    }
    if (issue.code === 'unrecognized_keys') {
      return `${path}: unknown field(s) ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`;
    }
    return `${path}: ${issue.message}${received === undefined ? '' : ` (got ${JSON.stringify(received)})`}`;
  });
}

function valueAt(input: unknown, path: PropertyKey[]): unknown {
  let node = input;
  for (const key of path) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}

/** Parses input or returns the problems; the workflow turns problems into an InvalidInput failure. */
export function parseInput<S extends z.ZodType>(
  schema: S,
  input: unknown,
): { ok: true; value: z.output<S> } | { ok: false; problems: string[] } {
  const result = schema.safeParse(input ?? {});
  return result.success
    ? { ok: true, value: result.data }
    : { ok: false, problems: describeInputIssues(result.error, input) };
}
