/**
 * Where a node process finds its tokens: files named by flags or environment variables, never
 * argv (any local user can list it). A node without a control token refuses to start unless it
 * is told explicitly to run open (docs/node-api.md, "Authentication").
 */
import { parseTokenList, readTokenFile } from '../node-token';
import type { TokenSets } from './auth';

const CONTROL_TOKENS_ENV = 'KIMICLAW_NODE_TOKENS';
const EVENTS_TOKENS_ENV = 'KIMICLAW_EVENTS_TOKENS';

export interface AuthSources {
  /** --token-file: control tokens, one per line. */
  tokenFile?: string;
  /** --events-token-file: event API tokens, one per line. */
  eventsTokenFile?: string;
  /** --insecure-no-auth: every caller is let in. */
  insecure: boolean;
  env: NodeJS.ProcessEnv;
}

export type AuthSetup = { mode: 'none' } | { mode: 'bearer'; tokens: TokenSets };

/** Reads the sources; errors name the flag, variable or file line at fault, never a token. */
export function loadAuthSetup(sources: AuthSources): AuthSetup {
  const control = oneSource('--token-file', sources.tokenFile, CONTROL_TOKENS_ENV, sources.env);
  const events = oneSource('--events-token-file', sources.eventsTokenFile, EVENTS_TOKENS_ENV, sources.env);
  if (sources.insecure) {
    if (control || events) {
      throw new Error('--insecure-no-auth runs the node open to every caller; give it no tokens, or drop the flag');
    }
    return { mode: 'none' };
  }
  if (!control) {
    const hint = events ? ' (event API tokens alone would leave the control routes open)' : '';
    throw new Error(
      `no control token${hint}: give --token-file PATH (one token per line) or ${CONTROL_TOKENS_ENV} ` +
        '(comma-separated); for a throwaway development node, --insecure-no-auth runs it open',
    );
  }
  return { mode: 'bearer', tokens: { control, events: events ?? [] } };
}

/**
 * Reads the token files again (rotation without a restart). Environment tokens cannot change in a
 * running process and are read as they were.
 */
export function reloadTokens(sources: AuthSources): TokenSets {
  const setup = loadAuthSetup(sources);
  if (setup.mode === 'none') throw new Error('this node runs without authentication; restart it with tokens');
  return setup.tokens;
}

/** The one place a token set comes from; both is refused rather than silently merged. */
function oneSource(
  flag: string,
  file: string | undefined,
  envName: string,
  env: NodeJS.ProcessEnv,
): string[] | undefined {
  const fromEnv = env[envName];
  if (file !== undefined && fromEnv) throw new Error(`give ${flag} or ${envName}, not both`);
  if (file !== undefined) return readTokenFile(file);
  if (!fromEnv) return undefined;
  const tokens = parseTokenList(fromEnv, envName);
  if (tokens.length === 0) throw new Error(`${envName} is set but lists no token`);
  return tokens;
}
