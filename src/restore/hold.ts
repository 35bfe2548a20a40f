/**
 * How long a restore holds the backups it reads (retention must not prune them under it), and how
 * long it waits for an archive-class artifact to be retrieved. The hold outlasts the longest wait
 * and is renewed at every retrieval check, so a slow retrieval never outlives it. Pure: workflow
 * code imports it.
 */

/** Archive-class retrieval (GLACIER, DEEP_ARCHIVE) takes hours; give up after this. */
export const RETRIEVAL_DEADLINE_MS = 72 * 3_600_000;

/** How often a waiting restore asks whether the retrieval is done, and renews its hold. */
export const RETRIEVAL_POLL_MS = 10 * 60_000;

/** Staging, replay and swap of even a large database fit in this many times over. */
const WORK_MS = 24 * 3_600_000;

/** The hold a restore takes on its backups: its work, plus the retrieval wait when it needs one. */
export function backupHoldMs(needsRetrieval: boolean): number {
  return needsRetrieval ? RETRIEVAL_DEADLINE_MS + WORK_MS : WORK_MS;
}
