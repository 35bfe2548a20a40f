/**
 * Streaming compression with a SHA-256 and byte counts taken on the way, so an artifact is read
 * from disk once and never held in memory. zstd runs as the Debian `zstd` command (multi-threaded,
 * ~10x gzip's speed on these files, no native build at install); gzip is Node's zlib.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, readFileSync, statSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { Duplex, Transform, type Readable, type TransformCallback, type Writable } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import type { Compression } from './ids';

/**
 * zstd -1: on a 1 GiB events database it used about half the CPU of -3 (3.6-4.2 s against
 * 6.3-7.3 s of CPU on 2 cores) for a 9.5% larger artifact; on a 2-core host that also verifies
 * and serves writes, CPU is the budget that matters.
 */
export const DEFAULT_LEVEL: Record<Compression, number> = { zstd: 1, gzip: 6 };

/** The zstd command; ZSTD_PATH overrides the one on PATH. */
export function zstdCommand(): string {
  return process.env.ZSTD_PATH ?? 'zstd';
}

/**
 * A pass-through that counts bytes and (unless told not to) hashes them; `onChunk` sees the
 * running total. Counting alone is free; SHA-256 costs about 1 s of CPU per GiB.
 */
export class Meter extends Transform {
  bytes = 0;
  private readonly hash: Hash | undefined;

  constructor(
    private readonly onChunk?: (bytes: number) => void,
    options: { hash?: boolean } = {},
  ) {
    super();
    this.hash = options.hash === false ? undefined : createHash('sha256');
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    this.hash?.update(chunk);
    this.onChunk?.(this.bytes);
    done(null, chunk);
  }

  /** Hex SHA-256 of everything that passed; call once, after the stream ended. */
  digest(): string {
    if (!this.hash) throw new Error('this Meter only counts bytes; it was created with hash: false');
    return this.hash.digest('hex');
  }
}

/** A codec in a pipeline: the stream, and a promise that fails if the codec itself failed. */
export interface CodecStream {
  stream: Duplex;
  /**
   * Settles when the codec is finished. For zstd this is the child's exit status, which a
   * pipeline alone would not see: a failing child may still close its output normally.
   */
  done: Promise<void>;
}

/** Compresses or decompresses with the given codec. */
export function codecStream(codec: Compression, direction: 'compress' | 'decompress', level?: number): CodecStream {
  if (codec === 'gzip') {
    return {
      stream: direction === 'compress' ? createGzip({ level: level ?? DEFAULT_LEVEL.gzip }) : createGunzip(),
      done: Promise.resolve(),
    };
  }
  const args = direction === 'compress' ? ['-q', `-${level ?? DEFAULT_LEVEL.zstd}`, '-T0', '-c'] : ['-q', '-d', '-c'];
  return childProcessStream(zstdCommand(), args, `zstd ${direction}`);
}

/** A file being compressed: the compressed bytes, and how far into the file the codec has read. */
export interface FileCompression {
  stream: Readable;
  done: Promise<void>;
  bytesRead(): number;
}

/**
 * Compresses a file. zstd reads the file itself rather than through this process (that pumping
 * cost ~0.5 s of CPU per GiB); how far it got is read from the kernel's I/O count of the child.
 */
export function compressFile(path: string, codec: Compression, level?: number): FileCompression {
  if (codec === 'gzip') {
    const counter = new Meter(undefined, { hash: false });
    const gzip = codecStream('gzip', 'compress', level);
    const source = createReadStream(path, { highWaterMark: 1024 * 1024 });
    source.on('error', (err) => gzip.stream.destroy(err));
    return { stream: source.pipe(counter).pipe(gzip.stream), done: gzip.done, bytesRead: () => counter.bytes };
  }
  const { stream, done, pid } = childProcessStream(
    zstdCommand(),
    ['-q', `-${level ?? DEFAULT_LEVEL.zstd}`, '-T0', '-c', '--', path],
    'zstd compress',
    'ignore',
  );
  let lastRead = 0;
  // A zstd that exited 0 has read the whole file.
  const whole = done.then(() => (lastRead = statSync(path).size));
  whole.catch(() => undefined);
  return {
    stream,
    done,
    bytesRead: () => {
      try {
        const io = readFileSync(`/proc/${pid}/io`, 'utf8');
        lastRead = Number(/^rchar: (\d+)$/m.exec(io)?.[1] ?? lastRead);
      } catch {
        // The child has exited (or there is no /proc): keep the last figure.
      }
      return lastRead;
    },
  };
}

/**
 * Decompresses a stream into a file. zstd writes the file itself, so the decompressed bytes
 * (twice the stored ones) never pass through this process.
 */
export async function decompressToFile(source: Readable, codec: Compression, path: string): Promise<void> {
  if (codec === 'gzip') {
    const gunzip = codecStream('gzip', 'decompress');
    await pipeline(source, gunzip.stream, createWriteStream(path));
    return;
  }
  const child = spawn(zstdCommand(), ['-q', '-d', '-f', '-o', path], { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-2000)));
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', (err: NodeJS.ErrnoException) =>
      reject(
        new Error(
          err.code === 'ENOENT'
            ? 'zstd decompress: the "zstd" command is not installed; install the Debian package zstd'
            : `zstd decompress: ${err.message}`,
        ),
      ),
    );
    child.on('close', (code, signal) =>
      code === 0
        ? resolve()
        : reject(new Error(`zstd decompress failed (exit ${code ?? signal}): ${stderr.trim() || 'no message'}`)),
    );
  });
  exited.catch(() => undefined);
  child.stdin.on('error', () => undefined);
  try {
    await pipeline(source, child.stdin);
  } catch (err) {
    child.kill('SIGKILL');
    // zstd refusing the data closes its input: its own message says why.
    await exited;
    throw err;
  }
  await exited;
}

function childProcessStream(
  command: string,
  args: string[],
  what: string,
  stdin: 'pipe' | 'ignore' = 'pipe',
): CodecStream & { pid: number | undefined } {
  const child = spawn(command, args, { stdio: [stdin, 'pipe', 'pipe'] }) as ChildProcessByStdio<
    Writable | null,
    Readable,
    Readable
  >;
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-2000)));
  const stream = child.stdin
    ? Duplex.from({ writable: child.stdin, readable: child.stdout })
    : Duplex.from(child.stdout);
  const done = new Promise<void>((resolve, reject) => {
    child.on('error', (err: NodeJS.ErrnoException) => {
      const message =
        err.code === 'ENOENT'
          ? `${what}: the "${command}" command is not installed; install the Debian package zstd or set backup.compression to "gzip"`
          : `${what}: ${err.message}`;
      const failure = new Error(message);
      stream.destroy(failure);
      reject(failure);
    });
    child.on('close', (code, signal) => {
      if (code === 0) return resolve();
      const failure = new Error(`${what} failed (exit ${code ?? signal}): ${stderr.trim() || 'no message'}`);
      stream.destroy(failure);
      reject(failure);
    });
  });
  // Whoever destroys the stream (a failed upload) must not leave the child running.
  stream.on('close', () => {
    if (!stream.readableEnded && child.exitCode === null) child.kill('SIGKILL');
  });
  done.catch(() => undefined);
  return { stream, done, pid: child.pid };
}
