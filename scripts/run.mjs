#!/usr/bin/env node
// Entry of the npm scripts. It runs before `npm install` may have happened, so it uses Node
// built-ins only: it checks Node, installs dependencies when node_modules is missing or older
// than package-lock.json, makes sure the external tools are built, then runs the mode asked for.
//
//   node scripts/run.mjs start [args...]   the single-host service (src/cli/main.ts start)
//   node scripts/run.mjs test [files...]   type-check, lint, then node:test over test/**/*.test.ts
//   node scripts/run.mjs cli [args...]     the kimiclaw-dr CLI
//   node scripts/run.mjs bench FILE [args...]
//   node scripts/run.mjs typecheck | lint  (no tools needed)
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MIN_NODE = [20, 19];
const INSTALL_STAMP = join(ROOT, 'node_modules', '.kimiclaw-dr-install-stamp');
const CLI_MAIN = join(ROOT, 'src', 'cli', 'main.ts');

function fail(message) {
  process.stderr.write(`kimiclaw-dr: ${message}\n`);
  process.exit(1);
}

function checkNode() {
  const [major, minor] = process.versions.node.split('.').map(Number);
  if (major < MIN_NODE[0] || (major === MIN_NODE[0] && minor < MIN_NODE[1])) {
    fail(
      `Node ${MIN_NODE.join('.')} or newer is needed (this is ${process.version}): ` +
        'install it from https://nodejs.org/ or with your version manager (e.g. `nvm install 20`)',
    );
  }
}

/** What the installed node_modules must match: the lock file, and the Node ABI that native
 *  modules (DuckDB, the Temporal core bridge) were installed for. */
function installFingerprint() {
  const lock = join(ROOT, 'package-lock.json');
  const hash = createHash('sha256');
  hash.update(existsSync(lock) ? readFileSync(lock) : readFileSync(join(ROOT, 'package.json')));
  hash.update(`\0${process.versions.modules}\0${process.platform}-${process.arch}`);
  return hash.digest('hex');
}

function ensureDependencies() {
  const wanted = installFingerprint();
  if (existsSync(INSTALL_STAMP) && readFileSync(INSTALL_STAMP, 'utf8').trim() === wanted) return;
  const hasLock = existsSync(join(ROOT, 'package-lock.json'));
  const args = hasLock ? ['ci', '--no-audit', '--no-fund'] : ['install', '--no-audit', '--no-fund'];
  process.stderr.write(`kimiclaw-dr: installing dependencies (npm ${args[0]})\n`);
  // npm's stdout goes to stderr: stdout of `npm run kimiclaw-dr -- … --json` stays parseable.
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const result = spawnSync(npm, args, { cwd: ROOT, stdio: ['ignore', 2, 2] });
  if (result.error) fail(`could not run npm: ${result.error.message}`);
  if (result.status !== 0) fail(`npm ${args[0]} failed (exit ${result.status}); see its output above`);
  writeFileSync(INSTALL_STAMP, `${wanted}\n`);
}

/** tsx resolved from this package, so the launchers also work when started from another cwd. */
function tsxImport() {
  return import.meta.resolve('tsx');
}

function ensureTools() {
  // Progress of a first-time build goes to stderr; stdout stays clean.
  const result = spawnSync(
    process.execPath,
    ['--import', tsxImport(), join(ROOT, 'src', 'dev', 'tools.ts'), '--quiet'],
    {
      cwd: ROOT,
      stdio: ['ignore', 2, 2],
    },
  );
  if (result.error) fail(`could not check the external tools: ${result.error.message}`);
  if (result.status !== 0) process.exit(result.status ?? 1);
}

/**
 * Runs a child with the terminal, passes on termination signals, and resolves with its exit.
 * With `tee`, its output also goes to that file (the terminal still sees it as it comes).
 */
function runChild(command, args, cwd = process.cwd(), { env: extraEnv = {}, tee } = {}) {
  return new Promise((resolveExit) => {
    // The pinned AWS SDK supports Node 20; its notice concerns releases we do not install, and
    // printed on every CLI call it would bury the output operators read.
    const env = { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...process.env, ...extraEnv };
    const child = spawn(command, args, { stdio: tee ? ['inherit', 'pipe', 'pipe'] : 'inherit', cwd, env });
    if (tee) {
      const log = createWriteStream(tee, { flags: 'a' });
      let open = 2;
      for (const [from, to] of [
        [child.stdout, process.stdout],
        [child.stderr, process.stderr],
      ]) {
        from.on('data', (chunk) => {
          to.write(chunk);
          log.write(chunk);
        });
        from.on('end', () => --open === 0 && log.end());
      }
    }
    const forward = (signal) => {
      // Ctrl-C in a terminal already reached the child (same process group); sending it again
      // would look like a second Ctrl-C, which programs treat as "force quit".
      if (signal === 'SIGINT' && process.stdin.isTTY) return;
      child.kill(signal);
    };
    const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    for (const s of signals) process.on(s, forward);
    child.on('error', (err) => {
      process.stderr.write(`kimiclaw-dr: could not start ${command}: ${err.message}\n`);
      resolveExit({ code: 1, signal: null });
    });
    child.on('exit', (code, signal) => {
      for (const s of signals) process.off(s, forward);
      resolveExit({ code, signal });
    });
  });
}

/** Exits the way the child did, so callers see the same status (or the same signal). */
function exitLike({ code, signal }) {
  if (signal) {
    process.kill(process.pid, signal);
    return;
  }
  process.exit(code ?? 1);
}

async function runOrFail(label, command, args) {
  process.stderr.write(`kimiclaw-dr: ${label}\n`);
  // From the repo root: ESLint finds its flat config relative to the working directory.
  const result = await runChild(command, args, ROOT);
  if (result.code !== 0) {
    process.stderr.write(`kimiclaw-dr: ${label} failed\n`);
    exitLike(result.signal ? result : { code: result.code ?? 1, signal: null });
  }
}

function localBin(name) {
  const bin = join(ROOT, 'node_modules', '.bin', process.platform === 'win32' ? `${name}.cmd` : name);
  if (!existsSync(bin)) fail(`${name} is not installed in node_modules; run \`npm ci\``);
  return bin;
}

const typecheck = () => runOrFail('type-checking (tsc --noEmit)', localBin('tsc'), ['--noEmit', '-p', ROOT]);
const lint = () => runOrFail('linting (eslint .)', localBin('eslint'), ['.']);

/** Every test/**\/*.test.ts, sorted, relative to the repo (Node 20's --test does not glob). */
function findTestFiles(dir = join(ROOT, 'test')) {
  if (!existsSync(dir)) return [];
  const found = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...findTestFiles(full));
    else if (entry.isFile() && entry.name.endsWith('.test.ts')) found.push(relative(ROOT, full));
  }
  return found.sort();
}

/**
 * Every place in `dir` (recursively) where one of `secrets` appears, as "file:line (name)"; the
 * secret itself is never part of the answer.
 */
function findSecrets(dir, secrets) {
  const found = [];
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const file = join(entry.parentPath, entry.name);
    const lines = readFileSync(file, 'utf8').split('\n');
    lines.forEach((line, i) => {
      for (const [name, value] of Object.entries(secrets)) {
        if (line.includes(value)) found.push(`${relative(dir, file)}:${i + 1} (${name})`);
      }
    });
  }
  return found;
}

async function test(files) {
  // Checked first: a typo should not cost a full type-check and lint before it is reported.
  const concurrency = process.env.KIMICLAW_TEST_CONCURRENCY || '1';
  if (!/^[1-9]\d*$/.test(concurrency))
    fail(`KIMICLAW_TEST_CONCURRENCY must be a positive integer, not "${concurrency}"`);
  if (process.env.KIMICLAW_SKIP_CHECKS !== '1') {
    await typecheck();
    await lint();
  }
  // The runner starts in the repo root; name the caller's files from there.
  const selected = files.length ? files.map((f) => relative(ROOT, resolve(f))) : findTestFiles();
  if (!selected.length) fail('no test files found under test/ (looking for *.test.ts)');
  // Output now goes through a pipe: keep the reporter a terminal would have chosen.
  const reporter = process.stdout.isTTY ? ['--test-reporter=spec', '--test-reporter-destination=stdout'] : [];
  const args = [
    '--import',
    tsxImport(),
    '--test',
    `--test-concurrency=${concurrency}`,
    '--test-timeout=600000',
    // KIMICLAW_TEST_PATTERN: run only the tests whose names match (node --test-name-pattern).
    ...(process.env.KIMICLAW_TEST_PATTERN ? [`--test-name-pattern=${process.env.KIMICLAW_TEST_PATTERN}`] : []),
    ...reporter,
    ...selected,
  ];
  // The node tokens of this run, and a directory for every log its processes write: the
  // harness tees nodes, workers, CLI calls, Temporal and versitygw there, and the runner's own
  // output (in-process workers, failure messages) goes there too. A token in any of them fails
  // the run, even when every test passed.
  const secrets = {
    KIMICLAW_TEST_NODE_TOKEN: randomBytes(32).toString('base64url'),
    KIMICLAW_TEST_EVENTS_TOKEN: randomBytes(32).toString('base64url'),
  };
  const logDir = mkdtempSync(join(tmpdir(), 'kimiclaw-dr-test-logs-'));
  const result = await runChild(process.execPath, args, ROOT, {
    env: { ...secrets, KIMICLAW_TEST_LOG_DIR: logDir },
    tee: join(logDir, 'node-test.log'),
  });
  const leaks = findSecrets(logDir, secrets);
  if (leaks.length > 0) {
    process.stderr.write(`kimiclaw-dr: a node token of this run appears in ${leaks.length} log line(s):\n`);
    for (const leak of leaks.slice(0, 50)) process.stderr.write(`  ${leak}\n`);
    process.stderr.write(`kimiclaw-dr: the logs are kept in ${logDir}\n`);
    exitLike({ code: 1, signal: null });
    return;
  }
  if (result.code === 0 && !result.signal) rmSync(logDir, { recursive: true, force: true });
  else process.stderr.write(`kimiclaw-dr: the logs of this run are kept in ${logDir}\n`);
  exitLike(result);
}

async function main(argv) {
  checkNode();
  const [mode, ...rest] = argv;
  const modes = ['start', 'test', 'cli', 'bench', 'typecheck', 'lint'];
  if (!modes.includes(mode)) fail(`usage: node scripts/run.mjs <${modes.join('|')}> [args...]`);
  ensureDependencies();
  if (mode === 'typecheck') return typecheck();
  if (mode === 'lint') return lint();
  ensureTools();
  const tsx = ['--import', tsxImport()];
  switch (mode) {
    case 'start':
      return exitLike(await runChild(process.execPath, [...tsx, CLI_MAIN, 'start', ...rest]));
    case 'cli':
      return exitLike(await runChild(process.execPath, [...tsx, CLI_MAIN, ...rest]));
    case 'bench': {
      const [file, ...args] = rest;
      if (!file) fail('usage: node scripts/run.mjs bench FILE [args...]');
      return exitLike(await runChild(process.execPath, [...tsx, file, ...args]));
    }
    case 'test':
      return test(rest);
  }
}

await main(process.argv.slice(2));
