/**
 * Who may call which route (docs/node-api.md, "Authentication"). Control tokens open every route;
 * events tokens open only the event API, so a writing client cannot demote the primary. Tokens
 * are compared as SHA-256 digests with timingSafeEqual: the time taken says nothing about a
 * token's content or length.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { NodeToken } from '../node-token';
import { HttpError } from './http';

/** What a route needs: nothing (GET /health), an events or a control credential. */
export type Access = 'open' | 'events' | 'control';

export interface TokenSets {
  /** Every route; the first is sent to this node's replicas. */
  control: readonly string[];
  /** POST /events, GET /events, GET /stats only. */
  events: readonly string[];
}

const digest = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

/** Bearer scheme, case-insensitive, one token (RFC 6750 characters). */
const BEARER = /^bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

export class NodeAuth {
  private control: Buffer[] = [];
  private events: Buffer[] = [];
  /** Held as a NodeToken, so that a logged NodeAuth shows no token either. */
  private outgoing: NodeToken | undefined;

  private constructor(readonly mode: 'bearer' | 'none') {}

  /** Every caller is let in: development only, announced in the start log and in /health. */
  static open(): NodeAuth {
    return new NodeAuth('none');
  }

  static bearer(tokens: TokenSets): NodeAuth {
    const auth = new NodeAuth('bearer');
    auth.replace(tokens);
    return auth;
  }

  /** Takes new token sets at once (a reload during rotation); requests in flight see old or new. */
  replace(tokens: TokenSets): void {
    if (this.mode === 'none') throw new Error('this node runs without authentication; restart it with tokens');
    if (tokens.control.length === 0) throw new Error('at least one control token is needed');
    this.control = tokens.control.map(digest);
    this.events = tokens.events.map(digest);
    this.outgoing = new NodeToken(tokens.control[0]!);
  }

  get counts(): { control: number; events: number } {
    return { control: this.control.length, events: this.events.length };
  }

  /** The Authorization header this node sends to its replicas, when it has a credential. */
  authorizationHeader(): Record<string, string> {
    return this.outgoing === undefined ? {} : { authorization: this.outgoing.authorization() };
  }

  /**
   * Throws 401 without a usable credential, 403 with one that is not accepted here; `what` names
   * the request (method and path), never the credential.
   */
  authorize(headers: IncomingHttpHeaders, access: Access, what: string): void {
    if (this.mode === 'none' || access === 'open') return;
    const header = headers.authorization;
    if (header === undefined || header === '') {
      throw new HttpError(401, 'Unauthorized', `${what} needs a credential: send "Authorization: Bearer <token>"`);
    }
    const match = BEARER.exec(header);
    if (!match) {
      throw new HttpError(401, 'Unauthorized', `${what}: the Authorization header must be "Bearer <token>"`);
    }
    const presented = digest(match[1]!);
    const isControl = anyEqual(this.control, presented);
    const isEvents = anyEqual(this.events, presented);
    if (isControl || (isEvents && access === 'events')) return;
    throw new HttpError(
      403,
      'Forbidden',
      isEvents
        ? `${what} needs a control credential; the one given is for the event API only`
        : `${what}: the credential given is not accepted by this node`,
    );
  }
}

/** Compares against every digest without stopping early, so timing does not say which matched. */
function anyEqual(digests: readonly Buffer[], presented: Buffer): boolean {
  let found = false;
  for (const d of digests) found = timingSafeEqual(d, presented) || found;
  return found;
}
