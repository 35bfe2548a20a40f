/**
 * Debian's Chromium for the tests that open a page in a real headless browser (the drill report).
 * `chromium` on PATH (or /usr/bin/chromium) when there is one; otherwise, as root with apt-get,
 * the `chromium` package is installed once per machine (it brings the shared libraries it needs,
 * so it cannot be unpacked into the tools cache as etcd is). puppeteer-core drives it and never
 * downloads a browser of its own.
 */
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { findOnPath, isExecutable, toolsCacheDir, withLock } from './tools';

const execFileAsync = promisify(execFile);
const PACKAGE = 'chromium';
const DEBIAN_PATH = '/usr/bin/chromium';
export const CHROMIUM_MISSING_MESSAGE =
  'Chromium is needed to open the drill report in a headless browser: as root, `apt-get install chromium` ' +
  '(Debian/Ubuntu), or put a `chromium` on PATH';

async function find(): Promise<string | undefined> {
  return (await findOnPath('chromium')) ?? ((await isExecutable(DEBIAN_PATH)) ? DEBIAN_PATH : undefined);
}

export async function ensureChromium(
  log: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): Promise<string> {
  const found = await find();
  if (found) return found;
  const aptGet = await findOnPath('apt-get');
  if (!aptGet || process.getuid?.() !== 0) throw new Error(CHROMIUM_MISSING_MESSAGE);
  const cacheDir = toolsCacheDir();
  await mkdir(cacheDir, { recursive: true });
  return withLock(join(cacheDir, `.${PACKAGE}.lock`), log, `installing ${PACKAGE}`, async () => {
    const again = await find();
    if (again) return again;
    log(`installing ${PACKAGE} with apt-get (once per machine)`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const install = () =>
      execFileAsync(aptGet, ['install', '-y', '--no-install-recommends', PACKAGE], { env, maxBuffer: 64 << 20 });
    try {
      await install();
    } catch {
      // A fresh image has no package lists yet.
      try {
        await execFileAsync(aptGet, ['update'], { env, maxBuffer: 64 << 20 });
        await install();
      } catch (err) {
        const output = (err as { stderr?: string }).stderr?.trim().split('\n').slice(-5).join('\n');
        throw new Error(
          `could not install ${PACKAGE} with apt-get (${output || (err as Error).message}); ${CHROMIUM_MISSING_MESSAGE}`,
        );
      }
    }
    const installed = await find();
    if (!installed) throw new Error(`apt-get installed ${PACKAGE} but no chromium binary was found`);
    return installed;
  });
}
