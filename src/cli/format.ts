/** Output for humans (aligned tables, sizes) and machines (JSON). */
import type { SyncRecord } from '../activities/cluster';
import type { CatalogEntry } from '../catalog';

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function formatBackupTable(backups: CatalogEntry[]): string {
  if (backups.length === 0) return 'no backups yet';
  return formatTable(
    ['BACKUP', 'TIER', 'CREATED', 'ROWS', 'LSN', 'SOURCE', 'STORED', 'STATUS', 'LOCATION'],
    backups.map((b) => [
      b.backupId,
      b.tier,
      b.createdAt.replace(/\.\d{3}Z$/, 'Z'),
      b.rows.toLocaleString('en-US'),
      String(b.lsn),
      formatBytes(b.sourceBytes),
      formatBytes(b.storedBytes),
      b.bad ? `BAD: ${b.bad.reason}` : 'verified',
      b.location,
    ]),
  );
}

/** The sync record in one line: who holds every acknowledged write, where, or why nobody does. */
export function describeSync(sync: SyncRecord): string {
  if (sync.degraded) return `sync: DEGRADED since ${sync.since} (the primary acknowledges writes alone)`;
  if (sync.switching) {
    return `sync: moving the synchronous role ${sync.switching.from.join(', ') || '(none)'} → ${sync.switching.to.join(', ')} since ${sync.since} (${sync.switching.why}); no standby promised until it is proven`;
  }
  if (sync.standbys.length === 0) return `sync: no standby proven yet in epoch ${sync.epoch} (since ${sync.since})`;
  const where = sync.standbys.map((id) => (sync.zones?.[id] ? `${id} (zone ${sync.zones[id]})` : id)).join(', ');
  const placement =
    sync.placement === 'same-zone'
      ? " — SAME-ZONE FALLBACK: no node of another zone is in sync; losing the primary's zone would lose this standby too"
      : sync.placement === 'other-zone'
        ? ' — in another zone than the primary'
        : '';
  return `sync: standby ${where} holds every acknowledged write${placement}`;
}
