/**
 * Activities throw our own error kinds; Temporal needs to know which ones a retry can fix. This
 * turns them into ApplicationFailures: input, config and verification problems are final, an
 * unreachable server is retried with backoff and its message says what we are waiting for.
 */
import { ApplicationFailure } from '@temporalio/common';
import {
  ConfigProblem,
  InputProblem,
  LeaseLost,
  NodeDamaged,
  NotOnThisHost,
  PublishRefused,
  TopologyBusy,
  Unavailable,
  VerificationFailed,
} from '../errors';

export const FAILURE_TYPES = {
  invalidInput: 'InvalidInput',
  invalidConfig: 'InvalidConfig',
  verificationFailed: 'VerificationFailed',
  unavailable: 'Unavailable',
  topologyBusy: 'TopologyBusy',
  leaseLost: 'LeaseLost',
  publishRefused: 'PublishRefused',
  notOnThisHost: 'NotOnThisHost',
  nodeDamaged: 'NodeDamaged',
} as const;

export function toApplicationFailure(err: unknown): unknown {
  if (err instanceof ApplicationFailure) return err;
  if (err instanceof InputProblem) {
    return ApplicationFailure.create({
      type: FAILURE_TYPES.invalidInput,
      message: err.message,
      details: [{ field: err.field }],
      nonRetryable: true,
    });
  }
  if (err instanceof ConfigProblem) {
    return ApplicationFailure.create({
      type: FAILURE_TYPES.invalidConfig,
      message: err.message,
      details: [{ field: err.field }],
      nonRetryable: true,
    });
  }
  if (err instanceof VerificationFailed) {
    return ApplicationFailure.create({
      type: FAILURE_TYPES.verificationFailed,
      message: err.message,
      nonRetryable: true,
    });
  }
  for (const [kind, type] of [
    [TopologyBusy, FAILURE_TYPES.topologyBusy],
    [LeaseLost, FAILURE_TYPES.leaseLost],
    [PublishRefused, FAILURE_TYPES.publishRefused],
    [NotOnThisHost, FAILURE_TYPES.notOnThisHost],
    [NodeDamaged, FAILURE_TYPES.nodeDamaged],
  ] as const) {
    if (err instanceof kind) return ApplicationFailure.create({ type, message: err.message, nonRetryable: true });
  }
  if (err instanceof Unavailable) {
    return ApplicationFailure.create({ type: FAILURE_TYPES.unavailable, message: err.message });
  }
  return err;
}

/** Wraps every function of an activity object so thrown errors are classified. */
export function classifyFailures<T extends Record<string, (...args: never[]) => Promise<unknown>>>(activities: T): T {
  const wrapped: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(activities)) {
    wrapped[name] = async (...args: never[]) => {
      try {
        return await fn(...args);
      } catch (err) {
        throw toApplicationFailure(err);
      }
    };
  }
  return wrapped as T;
}
