/**
 * Workflow `archiveLog`: keeps a database's continuous log archive running, one per database
 * (id archive-log-<database>). It runs the archiver activity for an hour at a time and continues
 * as new, so its history stays small however long it runs.
 *
 * Input (paste into the Temporal UI): { "database": "kimiclaw" }
 */
import { continueAsNew, proxyActivities, upsertSearchAttributes } from '@temporalio/workflow';
import { z } from 'zod';
import type { ControlActivities } from '../activities';
import { DEFAULT_DATABASE, NameSchema } from '../domain';
import { DrDatabase } from './search-attributes';
import { explainFailure } from './failure';
import { inputOrFail } from './input';

export const ArchiveLogInputSchema = z.object({ database: NameSchema.default(DEFAULT_DATABASE) }).strict();
export type ArchiveLogInput = z.input<typeof ArchiveLogInputSchema>;

const RUN_FOR_MS = 3_600_000;

const archiver = proxyActivities<ControlActivities>({
  startToCloseTimeout: RUN_FOR_MS + 10 * 60_000,
  heartbeatTimeout: '30s',
  // A daemon: an archiver that dies (worker killed) is started again, forever, with backoff.
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' },
});

export async function archiveLog(input: ArchiveLogInput = {}): Promise<never> {
  const { database } = inputOrFail(ArchiveLogInputSchema, input, 'archiveLog');
  upsertSearchAttributes([{ key: DrDatabase, value: database }]);
  await archiver.runLogArchiver({ database, runForMs: RUN_FOR_MS }).catch((err: unknown) => {
    throw explainFailure(err, `the log archiver of ${database} stopped`, 'ArchiveFailed');
  });
  return continueAsNew<typeof archiveLog>({ database });
}
