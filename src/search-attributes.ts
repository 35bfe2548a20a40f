/**
 * The custom search attributes the workflows set, all Keyword so operators filter on them
 * exactly. The embedded dev server registers them at start; for an existing cluster
 * `kimiclaw-dr setup` (and `start`) add whichever are missing.
 */
import type { Connection } from '@temporalio/client';
import { encodeSearchAttributeIndexedValueType } from '@temporalio/common/lib/search-attributes';

/** Custom search attributes the DR workflows set; all Keyword so they can be filtered on exactly. */
export const SEARCH_ATTRIBUTES = {
  DrDatabase: 'Keyword',
  DrTier: 'Keyword',
  DrBackupId: 'Keyword',
  DrScenario: 'Keyword',
  DrOutcome: 'Keyword',
} as const satisfies Record<string, 'Keyword'>;
export type DrSearchAttribute = keyof typeof SEARCH_ATTRIBUTES;

/**
 * Adds whichever of SEARCH_ATTRIBUTES the namespace lacks (for a Temporal cluster we did not
 * start). Safe to call on every start: existing ones are left alone. Returns the names added.
 * Temporal Cloud refuses this call; there the attributes are added in the Cloud console or tcld.
 */
export async function registerSearchAttributes(
  connection: Pick<Connection, 'operatorService'>,
  namespace: string,
): Promise<string[]> {
  const keyword = encodeSearchAttributeIndexedValueType('KEYWORD');
  if (keyword === undefined) throw new Error('the Temporal SDK does not know the Keyword search attribute type');
  const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
  const existing = customAttributes ?? {};
  const clash = Object.keys(SEARCH_ATTRIBUTES).filter((n) => n in existing && existing[n] !== keyword);
  if (clash.length) {
    throw new Error(
      `search attributes ${clash.join(', ')} exist in namespace ${namespace} with a type other than Keyword`,
    );
  }
  const missing = Object.keys(SEARCH_ATTRIBUTES).filter((n) => !(n in existing));
  if (!missing.length) return [];
  try {
    await connection.operatorService.addSearchAttributes({
      namespace,
      searchAttributes: Object.fromEntries(missing.map((n) => [n, keyword])),
    });
  } catch (err) {
    // Another process registered them between our list and add.
    if (grpcCode(err) !== GRPC_ALREADY_EXISTS) throw err;
  }
  return missing;
}

const GRPC_ALREADY_EXISTS = 6;

function grpcCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}
