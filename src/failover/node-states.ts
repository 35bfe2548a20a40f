/**
 * What a node's /health `status` means to the control plane (docs/node-api.md). Pure: workflow
 * code imports it.
 */

/** A node in these states has nothing worth keeping in place: it is rebuilt from the primary, not rejoined. */
export const REBUILD_STATES: readonly string[] = ['damaged', 'empty'];

/** A primary reporting one of these has failed, whatever its replicas still hear from it. */
export const FAILED_PRIMARY_STATES: readonly string[] = ['damaged', 'unwritable', 'empty'];

/** A node in these states cannot take data yet: a recovery waits for it to leave them. */
export const BUSY_STATES: readonly string[] = ['unwritable', 'maintenance'];
