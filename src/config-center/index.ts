/**
 * Opens the config center a deployment names: etcd for a cluster, one JSON file for a single
 * host. See center.ts for the contract and the primary-record helpers.
 */
import type { ConfigCenter } from './center';
import { EtcdCenter } from './etcd';
import { FileCenter } from './file';

/** etcd members as configured: a client URL, or the URL with the member's zone. */
export type ConfigCenterOptions =
  | { kind: 'etcd'; endpoints: ReadonlyArray<string | { url: string }>; timeoutMs?: number }
  | { kind: 'file'; path: string };

/** Nothing is contacted yet: the first get, compareAndSwap or watch finds out whether it answers. */
export function openConfigCenter(opts: ConfigCenterOptions): ConfigCenter {
  switch (opts.kind) {
    case 'etcd':
      return new EtcdCenter({
        endpoints: opts.endpoints.map((e) => (typeof e === 'string' ? e : e.url)),
        timeoutMs: opts.timeoutMs,
      });
    case 'file':
      return new FileCenter({ path: opts.path });
  }
}

export {
  ConfigCenterUnavailable,
  InvalidPrimaryRecord,
  PRIMARY_KEY,
  casPrimary,
  parsePrimaryRecord,
  readPrimary,
  type CasPrimaryResult,
  type CasResult,
  type ConfigCenter,
  type PrimaryRecord,
  type Versioned,
} from './center';
export { EtcdCenter, type EtcdCenterOptions } from './etcd';
export { FileCenter, type FileCenterOptions } from './file';
