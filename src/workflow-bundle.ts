/**
 * The workflow code as one bundle, built once per version of the source and kept in the cache
 * directory beside the tools (`<cache>/workflow-bundles`): the worker processes of a host, the test
 * files and a drill's private stack start without bundling again (seconds of CPU each). The key
 * hashes every file under src/, the lock file and the SDK's version; a changed file is a new bundle.
 * Where the cache cannot be written the caller bundles as before (`undefined`).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { cacheRoot } from './dev/tools';

const SRC = __dirname;
const REPO = join(__dirname, '..');
/** Bundles of other versions are removed when this old. */
const KEEP_MS = 7 * 86_400_000;

const silent = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };

export async function cachedWorkflowBundle(): Promise<{ codePath: string } | undefined> {
  try {
    const dir = join(cacheRoot(), 'workflow-bundles');
    const codePath = join(dir, `workflows-${await sourceHash()}.js`);
    if (existsSync(codePath)) return { codePath };
    const { code } = await bundleWorkflowCode({ workflowsPath: join(SRC, 'workflows'), logger: silent });
    await mkdir(dir, { recursive: true });
    // Another process may build the same bundle meanwhile: each writes its own file, then renames.
    const tmp = `${codePath}.${process.pid}.tmp`;
    await writeFile(tmp, code);
    await rename(tmp, codePath);
    await removeOld(dir, codePath);
    return { codePath };
  } catch {
    return undefined;
  }
}

async function sourceHash(): Promise<string> {
  const hash = createHash('sha256');
  const files = (await readdir(SRC, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort();
  for (const file of files) hash.update(`${relative(SRC, file)}\0`).update(await readFile(file));
  const lock = join(REPO, 'package-lock.json');
  if (existsSync(lock)) hash.update(await readFile(lock));
  hash.update(JSON.parse(await readFile(require.resolve('@temporalio/worker/package.json'), 'utf8')).version as string);
  return hash.digest('hex').slice(0, 24);
}

async function removeOld(dir: string, keep: string): Promise<void> {
  for (const name of await readdir(dir)) {
    const file = join(dir, name);
    if (file === keep) continue;
    const info = await stat(file).catch(() => undefined);
    if (info && Date.now() - info.mtimeMs > KEEP_MS) await unlink(file).catch(() => undefined);
  }
}
