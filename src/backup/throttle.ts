/**
 * An upload bandwidth limit (like restic's --limit-upload): off-site copies should not saturate
 * the link the service itself needs.
 */
import { Transform, type TransformCallback } from 'node:stream';

export class Throttle extends Transform {
  private readonly started = Date.now();
  private sent = 0;

  constructor(private readonly bytesPerSecond: number) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.sent += chunk.length;
    const due = this.started + (this.sent / this.bytesPerSecond) * 1000;
    const wait = due - Date.now();
    if (wait > 0) setTimeout(() => done(null, chunk), wait);
    else done(null, chunk);
  }
}
