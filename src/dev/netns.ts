/**
 * A Linux network namespace for partition tests: a named namespace joined to the root namespace
 * by a veth pair on a private /30 (10.231.X.Y/30: the root side .1, the namespace side .2), with
 * `lo` up inside. Processes started under `exec` (`ip netns exec <name> …`) run in it and listen
 * on `address`; processes of the root namespace reach them there, and they reach the root side on
 * `hostAddress`. `partition()` sets the root-side link down, so nothing crosses in either
 * direction while everything on both sides keeps running; `heal()` sets it up again.
 *
 * The root namespace also gets an `unreachable` route for the /30 with a high metric, under the
 * veth's own route: while the link is down the kernel drops the veth's route, and without this
 * one the namespace's address would be routed out of the default interface (off the machine).
 * Adding that route is also how a /30 is claimed: it fails when another run holds the same one.
 *
 * Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2's `ip`. `remove()` deletes the veth,
 * the route and the namespace, and is safe to call twice; whatever a test did not remove is
 * removed when this process exits normally.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';

const IP = 'ip';
/** The metric of the claiming `unreachable` route: under the veth's own route (metric 0). */
const FALLBACK_METRIC = 4231;
const COMMAND_TIMEOUT_MS = 10_000;
const SUBNET_ATTEMPTS = 20;

export interface Netns {
  readonly name: string;
  /** The namespace's address (its veth end), e.g. 10.231.7.2. */
  readonly address: string;
  /** The root namespace's address on the veth (e.g. 10.231.7.1), reachable from inside. */
  readonly hostAddress: string;
  /** The /30 the pair uses, e.g. 10.231.7.0/30. */
  readonly subnet: string;
  /** The root-side veth (partition() sets it down). */
  readonly hostLink: string;
  /** argv prefix that runs a command inside: `['ip', 'netns', 'exec', name]`. */
  readonly exec: string[];
  readonly partitioned: boolean;
  /** Root-side link down: nothing crosses, either way; the processes on both sides keep running. */
  partition(): Promise<void>;
  /** Link up again. */
  heal(): Promise<void>;
  /** Deletes the veth, the route and the namespace; idempotent. */
  remove(): Promise<void>;
}

export interface CreateNetnsOptions {
  /** The namespace's name (must be free); default `kimiclaw-<random>`. */
  name?: string;
}

/** `ip` failed; the message names the command and what it printed. */
export class IpCommandError extends Error {
  constructor(
    readonly args: readonly string[],
    readonly stderr: string,
    cause?: unknown,
  ) {
    super(`\`${IP} ${args.join(' ')}\` failed: ${stderr.trim() || (cause as Error)?.message || 'no output'}`, {
      cause,
    });
    this.name = 'IpCommandError';
  }
}

function ip(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(IP, args, { timeout: COMMAND_TIMEOUT_MS }, (err, stdout, stderr) => {
      if (err) reject(new IpCommandError(args, String(stderr), err));
      else resolve(String(stdout));
    });
  });
}

/** Runs `ip args`; an error whose output matches `gone` (already removed) counts as done. */
async function ipIdempotent(args: string[], gone: RegExp): Promise<void> {
  try {
    await ip(args);
  } catch (err) {
    if (err instanceof IpCommandError && gone.test(err.stderr)) return;
    throw err;
  }
}

/** The commands that undo a namespace, in order, with what each says when already done. */
function undoCommands(name: string, hostLink: string, subnet: string): Array<{ args: string[]; gone: RegExp }> {
  return [
    { args: ['link', 'del', 'dev', hostLink], gone: /cannot find device|does not exist/i },
    {
      args: ['route', 'del', 'unreachable', subnet, 'metric', String(FALLBACK_METRIC)],
      gone: /no such process|not found/i,
    },
    { args: ['netns', 'del', name], gone: /no such file/i },
  ];
}

const live = new Map<string, { hostLink: string; subnet: string }>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' handlers cannot wait: undo synchronously, best effort.
  process.on('exit', () => {
    for (const [name, { hostLink, subnet }] of live) {
      for (const { args } of undoCommands(name, hostLink, subnet)) {
        try {
          execFileSync(IP, args, { stdio: 'ignore', timeout: COMMAND_TIMEOUT_MS });
        } catch {
          // already gone, or nothing more can be done here
        }
      }
    }
  });
}

/** Why network namespaces cannot be made here (not root, no `ip`), or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `network namespaces are Linux only (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'making network namespaces needs root';
  const probe = `kimiclaw-probe-${randomBytes(4).toString('hex')}`;
  try {
    execFileSync(IP, ['netns', 'add', probe], { stdio: 'pipe', timeout: COMMAND_TIMEOUT_MS });
  } catch (err) {
    const why = (err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message;
    return `\`${IP} netns add\` failed (iproute2 missing, or no CAP_SYS_ADMIN): ${why}`;
  }
  try {
    execFileSync(IP, ['netns', 'del', probe], { stdio: 'pipe', timeout: COMMAND_TIMEOUT_MS });
  } catch {
    // the probe was made; leave its removal error to the real run
  }
  return undefined;
}

async function namespaceExists(name: string): Promise<boolean> {
  const out = await ip(['netns', 'list']);
  return out.split('\n').some((line) => line.split(' ')[0] === name);
}

async function linkExists(name: string): Promise<boolean> {
  try {
    await ip(['link', 'show', 'dev', name]);
    return true;
  } catch (err) {
    if (err instanceof IpCommandError && /does not exist|cannot find device/i.test(err.stderr)) return false;
    throw err;
  }
}

/**
 * Claims a free 10.231.X.Y/30: none of the root namespace's addresses or routes is inside it,
 * and the `unreachable` route could be added (which fails if another run claimed it first).
 */
async function claimSubnet(): Promise<{ base: number[]; subnet: string }> {
  for (let attempt = 0; attempt < SUBNET_ATTEMPTS; attempt++) {
    const base = [10, 231, randomInt(256), randomInt(64) * 4];
    const subnet = `${base.join('.')}/30`;
    const addresses = await ip(['-4', '-o', 'addr', 'show']);
    const prefix = `${base.slice(0, 3).join('.')}.`;
    const taken = [...addresses.matchAll(/inet (\d+\.\d+\.\d+\.(\d+))\//g)].some(
      ([, addr, last]) => addr!.startsWith(prefix) && Math.floor(Number(last) / 4) * 4 === base[3],
    );
    if (taken || (await ip(['-4', 'route', 'show', 'table', 'all', 'root', subnet])).trim() !== '') continue;
    try {
      await ip(['route', 'add', 'unreachable', subnet, 'metric', String(FALLBACK_METRIC)]);
      return { base, subnet };
    } catch (err) {
      if (err instanceof IpCommandError && /file exists/i.test(err.stderr)) continue;
      throw err;
    }
  }
  throw new Error(`no free /30 in 10.231.0.0/16 after ${SUBNET_ATTEMPTS} tries`);
}

/** Makes the namespace, the veth pair and its addresses; on any failure undoes what it made. */
export async function createNetns(options: CreateNetnsOptions = {}): Promise<Netns> {
  const name = options.name ?? `kimiclaw-${randomBytes(4).toString('hex')}`;
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name)) {
    throw new Error(`network namespace name "${name}": letters, digits, '_', '.', '-' only (at most 64)`);
  }
  if (await namespaceExists(name)) throw new Error(`network namespace ${name} exists already; pick another name`);
  // Interface names have at most 15 characters.
  const id = randomBytes(3).toString('hex');
  const hostLink = `kc${id}h`;
  const nsLink = `kc${id}n`;
  if (await linkExists(hostLink)) throw new Error(`network interface ${hostLink} exists already; try again`);
  const { base, subnet } = await claimSubnet();
  const addr = (last: number) => [...base.slice(0, 3), base[3]! + last].join('.');
  const hostAddress = addr(1);
  const address = addr(2);
  let removed = false;
  let partitioned = false;
  const remove = async (): Promise<void> => {
    if (removed) return;
    const failures: string[] = [];
    for (const { args, gone } of undoCommands(name, hostLink, subnet)) {
      try {
        await ipIdempotent(args, gone);
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
    if (failures.length > 0) throw new Error(`removing network namespace ${name}: ${failures.join('; ')}`);
    removed = true;
    live.delete(name);
  };
  installExitHook();
  live.set(name, { hostLink, subnet });
  try {
    await ip(['netns', 'add', name]);
    await ip(['link', 'add', hostLink, 'type', 'veth', 'peer', 'name', nsLink, 'netns', name]);
    await ip(['addr', 'add', `${hostAddress}/30`, 'dev', hostLink]);
    await ip(['link', 'set', 'dev', hostLink, 'up']);
    await ip(['-n', name, 'addr', 'add', `${address}/30`, 'dev', nsLink]);
    await ip(['-n', name, 'link', 'set', 'dev', nsLink, 'up']);
    await ip(['-n', name, 'link', 'set', 'dev', 'lo', 'up']);
  } catch (err) {
    await remove().catch(() => undefined);
    throw err;
  }
  return {
    name,
    address,
    hostAddress,
    subnet,
    hostLink,
    exec: [IP, 'netns', 'exec', name],
    get partitioned() {
      return partitioned;
    },
    partition: async () => {
      await ip(['link', 'set', 'dev', hostLink, 'down']);
      partitioned = true;
    },
    heal: async () => {
      await ip(['link', 'set', 'dev', hostLink, 'up']);
      partitioned = false;
    },
    remove,
  };
}
