/**
 * The custom search attributes the workflows set. The embedded dev server registers them at
 * start; for an existing cluster `kimiclaw-dr setup` adds whichever are missing.
 */
import type { Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';

export const SEARCH_ATTRIBUTES = ['DrDatabase', 'DrTier', 'DrBackupId', 'DrScenario', 'DrOutcome'] as const;

/** Adds missing attributes as Keyword; returns the names it added. Idempotent. */
export async function registerSearchAttributes(
  connection: Pick<Connection, 'operatorService'>,
  namespace: string,
): Promise<string[]> {
  const existing = await connection.operatorService.listSearchAttributes({ namespace });
  const present = new Set(Object.keys(existing.customAttributes ?? {}));
  const missing = SEARCH_ATTRIBUTES.filter((name) => !present.has(name));
  if (missing.length === 0) return [];
  await connection.operatorService.addSearchAttributes({
    namespace,
    searchAttributes: Object.fromEntries(
      missing.map((name) => [name, temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD]),
    ),
  });
  return missing;
}
