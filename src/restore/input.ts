/**
 * The restore workflow's input: a plain JSON object an operator can paste into the Temporal UI.
 * Parsed with zod inside the workflow; a bad one fails at once naming the field and the accepted
 * values (docs/architecture.md, rule 8). Parse it with parseInput from ../backup/input. Pure: workflow code
 * imports it.
 */
import { z } from 'zod';
import { DEFAULT_DATABASE, NameSchema } from '../domain';
import { parseBackupId } from '../backup/ids';
import { parseInstant } from './instant';

/** backupId value that means "the newest usable backup". */
export const LATEST = 'latest';

export const RESTORE_TARGETS = ['in-place', 'scratch'] as const;
export type RestoreTarget = (typeof RESTORE_TARGETS)[number];

const BackupIdSchema = z.string().refine((id) => id === LATEST || parseBackupId(id) !== undefined, {
  message: 'must be "latest" or a backup id such as "kimiclaw-L2-20261126T030000Z-3f9a"',
});

/** Normalised to UTC with microseconds (2026-06-01T10:00:00.250000Z) so it compares with event times. */
const PointInTimeSchema = z.string().transform((text, ctx) => {
  const instant = parseInstant(text);
  if (!instant) {
    ctx.addIssue({
      code: 'custom',
      message:
        'must be an ISO-8601 date and time with a timezone, e.g. "2026-06-01T10:00:00Z" or "2026-06-01T12:00:00.250+02:00"',
    });
    return z.NEVER;
  }
  return instant.iso;
});

const LsnRangeSchema = z
  .object({ fromLsn: z.number().int().min(1), toLsn: z.number().int().min(1) })
  .strict()
  .refine((r) => r.fromLsn <= r.toLsn, { message: 'is empty: fromLsn must be at most toLsn' });

/** A directory on the node's host: absolute and normalised, so it can be compared with the data directory. */
const ScratchDirSchema = z
  .string()
  .max(4096)
  .refine((dir) => dir.startsWith('/') && !dir.includes('\0') && !/(^|\/)\.\.?(\/|$)/.test(dir), {
    message: 'must be an absolute path without "." or ".." segments, e.g. "/var/tmp/kimiclaw-restore"',
  });

export const RestoreInputSchema = z
  .object({
    database: NameSchema.default(DEFAULT_DATABASE),
    /** A backup id of this database, or "latest"; absent means the newest backup that reaches the target. */
    backupId: BackupIdSchema.optional(),
    /** Restore the database as it was at this instant (the last write batch with ts ≤ it). */
    pointInTime: PointInTimeSchema.optional(),
    /** Restore up to and including this LSN. */
    toLsn: z.number().int().nonnegative().optional(),
    /** "in-place" replaces the node's database (the current file is moved aside); "scratch" restores beside it. */
    target: z.enum(RESTORE_TARGETS).default('in-place'),
    /** Node to restore on; defaults to the database's primary. */
    node: NameSchema.optional(),
    /** Where a scratch restore writes, on the node's host; only with target "scratch". */
    scratchDir: ScratchDirSchema.optional(),
    /**
     * Restore even though some acknowledged writes cannot be brought back (no node can prove the
     * acknowledged head, or the archive does not reach it); the result counts them. In place only.
     */
    acceptLoss: z.boolean().optional(),
    /**
     * Batches to leave out (surgical repair of bad writes), as inclusive LSN ranges: the restore
     * starts from the newest backup before the first one and replays the archive around them, so
     * the good writes after them are kept with the ids and LSNs they were acknowledged with.
     */
    excludeLsns: z
      .array(LsnRangeSchema)
      .min(1, 'list at least one range, or leave excludeLsns out')
      .max(10_000)
      .optional(),
  })
  .strict()
  .superRefine(
    (input, ctx) => {
      // With `when`, this also runs when other fields failed: each value may be anything.
      const { database, backupId, pointInTime, toLsn, target, scratchDir, acceptLoss, excludeLsns } = input as Record<
        string,
        unknown
      >;
      if (acceptLoss !== undefined && target === 'scratch') {
        ctx.addIssue({
          code: 'custom',
          path: ['acceptLoss'],
          message: 'means nothing for a scratch restore, which replaces no data; leave it out',
        });
      }
      if (Array.isArray(excludeLsns)) {
        const ranges = (excludeLsns as Array<{ fromLsn?: unknown; toLsn?: unknown }>)
          .filter((r) => typeof r?.fromLsn === 'number' && typeof r.toLsn === 'number')
          .map((r) => ({ fromLsn: r.fromLsn as number, toLsn: r.toLsn as number }))
          .sort((a, b) => a.fromLsn - b.fromLsn);
        for (let i = 1; i < ranges.length; i++) {
          const [a, b] = [ranges[i - 1]!, ranges[i]!];
          if (b.fromLsn <= a.toLsn) {
            ctx.addIssue({
              code: 'custom',
              path: ['excludeLsns'],
              message: `ranges ${a.fromLsn}-${a.toLsn} and ${b.fromLsn}-${b.toLsn} overlap; merge them into one`,
            });
          }
        }
        if (typeof toLsn === 'number' && ranges.some((r) => r.toLsn > toLsn)) {
          ctx.addIssue({
            code: 'custom',
            path: ['excludeLsns'],
            message: `reaches past toLsn ${toLsn}: a range to leave out must lie within what is restored`,
          });
        }
      }
      if (pointInTime !== undefined && toLsn !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['toLsn'], message: 'give pointInTime or toLsn, not both' });
      }
      if (typeof backupId === 'string' && typeof database === 'string') {
        const parsed = parseBackupId(backupId);
        if (parsed && parsed.database !== database) {
          ctx.addIssue({
            code: 'custom',
            path: ['backupId'],
            message: `belongs to database "${parsed.database}", not "${database}"; set database or pick a backup of "${database}"`,
          });
        }
      }
      if (scratchDir !== undefined && target === 'in-place') {
        ctx.addIssue({
          code: 'custom',
          path: ['scratchDir'],
          message: 'is only used with target "scratch"; set target to "scratch" or leave scratchDir out',
        });
      }
    },
    { when: (payload) => typeof payload.value === 'object' && payload.value !== null },
  );

export type RestoreInput = z.input<typeof RestoreInputSchema>;
export type ParsedRestoreInput = z.output<typeof RestoreInputSchema>;
