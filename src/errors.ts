/**
 * Errors that say what kind of failure they are, so activities can tell Temporal whether a retry
 * can help: bad input or config never gets better by retrying; an unreachable server may.
 */

/** The configuration points at something that does not exist or refuses us. Not retried. */
export class ConfigProblem extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'ConfigProblem';
  }
}

/** A caller asked for something that is not there or not allowed. Not retried. */
export class InputProblem extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'InputProblem';
  }
}

/** A server we need does not answer (yet). Retried with backoff; the message says who we wait for. */
export class Unavailable extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'Unavailable';
  }
}

/**
 * Work that needs a node's disk reached a worker on another host (or the control queue). Not
 * retried: the same worker would refuse it again; the message names the queue it belongs on.
 */
export class NotOnThisHost extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotOnThisHost';
  }
}

/** Data did not match what was recorded for it: a torn snapshot, a flipped byte. Not retried. */
export class VerificationFailed extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VerificationFailed';
  }
}

/**
 * A node refused because its database file is damaged (docs/node-api.md, `Damaged`): a fact about
 * the file that no retry changes; it holds until the node is rebuilt or restored. Not retried.
 */
export class NodeDamaged extends Error {
  constructor(
    readonly node: string,
    message: string,
  ) {
    super(message);
    this.name = 'NodeDamaged';
  }
}

/** Another topology change of the cluster holds its lease. Not retried: the message names the holder. */
export class TopologyBusy extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TopologyBusy';
  }
}

/** The topology lease this operation held was taken over or released under it. Not retried. */
export class LeaseLost extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LeaseLost';
  }
}

/** The config center refused a new primary record: another one was recorded meanwhile. Not retried. */
export class PublishRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PublishRefused';
  }
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'TimeoutError',
]);

/** The network-level reason of an error (ECONNREFUSED …), looking through `cause` chains. */
export function networkErrorCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code ?? (e as { name?: unknown }).name;
    if (typeof code === 'string' && NETWORK_CODES.has(code)) return code;
    const errors = (e as { errors?: unknown }).errors;
    if (Array.isArray(errors) && errors.length > 0) {
      const inner = networkErrorCode(errors[0]);
      if (inner) return inner;
    }
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}
