/**
 * A FIFO async mutex. DuckDB has one writer per database anyway; serializing writes in-process
 * makes them queue in arrival order instead of failing on a write-write conflict, and lets a
 * snapshot pause writes by simply holding the lock.
 */
export type Release = () => void;

export class Mutex {
  private locked = false;
  private readonly waiters: Array<() => void> = [];

  /** Resolves when the caller holds the lock; call the returned function exactly once to release. */
  acquire(): Promise<Release> {
    return new Promise<Release>((resolve) => {
      const grant = (): void => {
        this.locked = true;
        let released = false;
        resolve(() => {
          if (released) return;
          released = true;
          this.handOver();
        });
      };
      if (this.locked) this.waiters.push(grant);
      else grant();
    });
  }

  /** How many callers are waiting for the lock. */
  get queueLength(): number {
    return this.waiters.length;
  }

  private handOver(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.locked = false;
  }
}

/**
 * A gate that callers pass through, which can be held shut (by several holders at once). Used to
 * hold back new readers while a snapshot waits for the readers already running.
 */
export class Gate {
  private holders = 0;
  private waiters: Array<() => void> = [];

  /** Shuts the gate until the returned function is called (once). */
  shut(): Release {
    this.holders++;
    let opened = false;
    return () => {
      if (opened) return;
      opened = true;
      if (--this.holders === 0) {
        const waiting = this.waiters;
        this.waiters = [];
        for (const wake of waiting) wake();
      }
    };
  }

  /** Resolves at once when open, else when the last holder opens it. */
  pass(): Promise<void> {
    if (this.holders === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.waiters.push(resolve));
  }
}
