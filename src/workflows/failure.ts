/**
 * How a workflow fails: with the cause's type (InvalidInput, TopologyBusy, VerificationFailed …)
 * and message at the top, so the UI, the CLI and a client's `result()` say what was wrong without
 * unwrapping "Activity task failed" → cause → cause.
 */
import { ActivityFailure, ApplicationFailure, ChildWorkflowFailure } from '@temporalio/workflow';

/** The innermost application failure of an activity or child failure, if there is one. */
export function applicationCause(err: unknown): ApplicationFailure | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 5 && e; depth++) {
    if (e instanceof ApplicationFailure) return e;
    if (e instanceof ActivityFailure || e instanceof ChildWorkflowFailure) e = e.cause;
    else return undefined;
  }
  return undefined;
}

/** The message of what actually went wrong. */
export function failureMessage(err: unknown): string {
  return applicationCause(err)?.message ?? (err instanceof Error ? err.message : String(err));
}

/**
 * A non-retryable failure "<context>: <what went wrong>" of the cause's type (`fallbackType` when
 * the cause has none). A failure already raised by the workflow itself passes through unchanged.
 */
export function explainFailure(err: unknown, context: string, fallbackType = 'Failed'): ApplicationFailure {
  if (err instanceof ApplicationFailure && err.nonRetryable) return err;
  const cause = applicationCause(err);
  return ApplicationFailure.create({
    type: cause?.type ?? fallbackType,
    message: `${context}: ${failureMessage(err)}`,
    nonRetryable: true,
    cause: err instanceof Error ? err : undefined,
    details: cause?.details ?? undefined,
  });
}
