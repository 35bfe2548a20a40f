/** Parsing a workflow's input: a bad one fails the workflow at once (docs/architecture.md, rule 8). */
import { ApplicationFailure } from '@temporalio/workflow';
import type { z } from 'zod';
import { parseInput } from '../backup/input';

/** The parsed input, or a non-retryable InvalidInput failure naming every bad field. */
export function inputOrFail<S extends z.ZodType>(schema: S, input: unknown, workflow: string): z.output<S> {
  const parsed = parseInput(schema, input);
  if (parsed.ok) return parsed.value;
  throw ApplicationFailure.create({
    type: 'InvalidInput',
    message: `invalid ${workflow} input: ${parsed.problems.join('; ')}`,
    details: parsed.problems,
    nonRetryable: true,
  });
}
