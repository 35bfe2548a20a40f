/**
 * Structured logging: one JSON object per line on stderr, so stdout stays free for the single
 * machine-readable "listening" line a parent process waits for.
 */
export type LogFields = Record<string, unknown>;
export type Logger = (event: string, fields?: LogFields) => void;

export function jsonLogger(base: LogFields, write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  return (event, fields = {}) => {
    write(`${JSON.stringify({ time: new Date().toISOString(), event, ...base, ...fields })}\n`);
  };
}

export const silentLogger: Logger = () => undefined;

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
