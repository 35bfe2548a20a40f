/**
 * Which backups of one tier to delete (docs/architecture.md, rule 5). Pure: the caller lists the manifests and
 * says what is in use; this decides, with a reason for every backup it keeps.
 */
export interface RetentionCandidate {
  backupId: string;
  createdAt: string;
  /** A backup found bad is not "verified" and never counts as the newest verified one. */
  bad?: unknown;
  /** Object Lock retention end, ISO-8601. */
  retainUntil?: string;
}

export type KeepReason = 'within-retention' | 'newest-verified' | 'in-use' | 'object-lock';

export interface RetentionPlan<T extends RetentionCandidate> {
  delete: T[];
  keep: Array<{ backup: T; reason: KeepReason }>;
}

export interface RetentionPolicy {
  now: Date;
  retentionMs: number;
  /** Backups a running restore, restore test or drill reads. */
  inUse?: ReadonlySet<string>;
}

export function planRetention<T extends RetentionCandidate>(
  backups: readonly T[],
  policy: RetentionPolicy,
): RetentionPlan<T> {
  if (!(policy.retentionMs > 0))
    throw new RangeError(`retention must be greater than zero, got ${policy.retentionMs} ms`);
  const cutoff = policy.now.getTime() - policy.retentionMs;
  // A backup whose date cannot be read is kept (below) but never counts as the newest.
  const newestVerified = backups
    .filter((b) => !b.bad && !Number.isNaN(Date.parse(b.createdAt)))
    .reduce<T | undefined>(
      (newest, b) => (!newest || Date.parse(b.createdAt) > Date.parse(newest.createdAt) ? b : newest),
      undefined,
    );

  const plan: RetentionPlan<T> = { delete: [], keep: [] };
  for (const backup of backups) {
    const reason = keepReason(backup, newestVerified, cutoff, policy);
    if (reason) plan.keep.push({ backup, reason });
    else plan.delete.push(backup);
  }
  return plan;
}

function keepReason<T extends RetentionCandidate>(
  backup: T,
  newestVerified: T | undefined,
  cutoff: number,
  policy: RetentionPolicy,
): KeepReason | undefined {
  if (backup === newestVerified) return 'newest-verified';
  if (policy.inUse?.has(backup.backupId)) return 'in-use';
  if (backup.retainUntil && Date.parse(backup.retainUntil) > policy.now.getTime()) return 'object-lock';
  // An unparseable date is never old enough to delete.
  const created = Date.parse(backup.createdAt);
  if (Number.isNaN(created) || created >= cutoff) return 'within-retention';
  return undefined;
}
