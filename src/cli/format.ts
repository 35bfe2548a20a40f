/** Output for humans (aligned tables, sizes) and machines (JSON). */
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
