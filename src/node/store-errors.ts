/** The refusals and failures of the node's store, each with what a caller needs to act on it. */
import type { ReplicationState } from './session';

/** Writes go to the primary only. */
export class NotPrimaryError extends Error {
  constructor(readonly state: ReplicationState) {
    super(
      state.role === 'fenced'
        ? `this node was primary of epoch ${state.epoch} and has been fenced: a newer primary exists; it accepts no writes until it rejoins as a replica`
        : state.role === 'none'
          ? 'this node has no usable database and no role; send writes to the primary'
          : `this node is a ${state.role} (epoch ${state.epoch}); send writes to the primary`,
    );
    this.name = 'NotPrimaryError';
  }
}

/** A message from a primary whose epoch a newer one has superseded. */
export class StaleEpochError extends Error {
  constructor(
    readonly epoch: number,
    readonly current: number,
    what = 'the request',
    message = `${what} carries epoch ${epoch}, older than this node's epoch ${current}: a newer primary exists`,
  ) {
    super(message);
    this.name = 'StaleEpochError';
  }
}

/** Replicated events that do not follow on from what this node has. */
export class ReplicationGapError extends Error {
  constructor(
    readonly expectedLsn: number,
    readonly gotLsn: number,
  ) {
    super(
      `replicated events start at LSN ${gotLsn}; this node has LSN ${expectedLsn - 1} and needs ${expectedLsn} next`,
    );
    this.name = 'ReplicationGapError';
  }
}

export interface MaintenanceState {
  reason: string | null;
  /** ISO time maintenance was entered. */
  since: string;
}

export class StoreClosedError extends Error {
  constructor() {
    super('the database is closed (the node is stopping)');
    this.name = 'StoreClosedError';
  }
}

export class LsnAheadError extends Error {
  constructor(
    readonly requested: number,
    readonly current: number,
    /** The request field that carried the LSN. */
    readonly field = 'lsn',
  ) {
    super(`${field} ${requested} is ahead of this node's lsn ${current}: rows up to it may still arrive`);
    this.name = 'LsnAheadError';
  }
}

/** The node is in maintenance: its file is closed, so nothing can be read or written. */
export class MaintenanceError extends Error {
  constructor(readonly state: MaintenanceState) {
    super(MaintenanceError.describe('the node', state));
    this.name = 'MaintenanceError';
  }

  /** The message, naming the node. */
  static describe(node: string, state: MaintenanceState): string {
    return (
      `${node} is in maintenance since ${state.since}${state.reason ? ` (reason: ${state.reason})` : ''}: ` +
      'its database file is closed; it accepts writes and reads again after POST /maintenance { "enabled": false }'
    );
  }
}

/** Leaving maintenance found no file at the database path (and allowEmpty was not given). */
export class DatabaseMissingError extends Error {
  constructor(readonly path: string) {
    super(
      `${path} does not exist; put the database file there, or pass "allowEmpty": true to start an empty ` +
        'database; the node stays in maintenance',
    );
    this.name = 'DatabaseMissingError';
  }
}

/** Leaving maintenance found a WAL that does not belong to the file now at the path. */
export class StaleWalError extends Error {
  constructor(
    readonly path: string,
    readonly bytes: number,
  ) {
    super(
      `${path} (${bytes} bytes) is not the WAL this node left when it closed the database; DuckDB would replay ` +
        'it onto the file now in place and mix in foreign rows. Move it aside (or remove it); the node stays in maintenance',
    );
    this.name = 'StaleWalError';
  }
}
