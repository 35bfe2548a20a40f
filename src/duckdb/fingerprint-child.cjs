/* global require, process */
/* eslint-disable @typescript-eslint/no-require-imports -- plain CommonJS on purpose, see below */
'use strict';
// The fingerprint reader of verify.ts, in its own process: a corrupt file can crash DuckDB, and
// that must take down this child, not the caller. Plain JavaScript so it starts without a
// TypeScript loader, and CommonJS because the ESM loader adds ~80 ms (0.16 s to start in all,
// 0.3 s with tsx). The query comes from the parent, so the SQL lives in one place
// (fingerprint.ts).
//
// argv: <database path> <fingerprint SQL>. Writes one JSON line to stdout:
//   {"ok":true,"row":{...}} or {"ok":false,"stage":"open"|"schema"|"query","message":"..."}
const { DuckDBInstance } = require('@duckdb/node-api');

function reply(message, exitCode) {
  process.stdout.write(JSON.stringify(message) + '\n', () => process.exit(exitCode));
}

function errorText(err) {
  return err instanceof Error ? err.message : String(err);
}

async function main() {
  const [path, sql] = process.argv.slice(2);
  if (!path || !sql) return reply({ ok: false, stage: 'open', message: 'usage: fingerprint-child <path> <sql>' }, 2);
  let instance;
  try {
    // READ_ONLY neither creates a .wal nor writes the file (checked: byte-identical afterwards).
    instance = await DuckDBInstance.create(path, {
      access_mode: 'READ_ONLY',
      autoinstall_known_extensions: 'false',
      autoload_known_extensions: 'false',
    });
  } catch (err) {
    return reply({ ok: false, stage: 'open', message: errorText(err) }, 3);
  }
  const connection = await instance.connect();
  let tables;
  try {
    const reader = await connection.runAndReadAll(
      "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main' ORDER BY 1",
    );
    tables = reader.getRows().map((r) => String(r[0]));
  } catch (err) {
    return reply({ ok: false, stage: 'open', message: errorText(err) }, 3);
  }
  if (!tables.includes('events')) {
    return reply({ ok: false, stage: 'schema', message: `tables: ${tables.join(', ') || '(none)'}` }, 3);
  }
  try {
    const reader = await connection.runAndReadAll(sql);
    reply({ ok: true, row: reader.getRowObjectsJS()[0] ?? null }, 0);
  } catch (err) {
    reply({ ok: false, stage: 'query', message: errorText(err) }, 3);
  }
}

main().catch((err) => reply({ ok: false, stage: 'query', message: errorText(err) }, 3));
