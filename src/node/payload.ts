/**
 * Realistic event payloads for the writer: user and session ids, an action, a timestamp and
 * nested attributes, about 250-400 bytes of JSON. Realistic matters: compression ratios, file
 * sizes and copy times measured on uniform filler would flatter every benchmark.
 */
export const EVENT_KINDS = ['page_view', 'click', 'add_to_cart', 'checkout', 'login', 'logout', 'search', 'purchase'];
const PAGES = ['home', 'products', 'cart', 'checkout', 'search', 'account', 'help'];
const REFERRERS = ['google', 'direct', 'newsletter', 'twitter', 'partner'];
const OSES = ['ios', 'android', 'windows', 'macos', 'linux'];

export interface GeneratedEvent {
  kind: string;
  payload: Record<string, unknown>;
}

const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)] as T;
const int = (below: number): number => Math.floor(Math.random() * below);
const hex = (chars: number): string => {
  let out = '';
  while (out.length < chars) out += Math.random().toString(16).slice(2);
  return out.slice(0, chars);
};

/** One event; payloadBytes pads a free-text note so the JSON is at least that long. */
export function makeEvent(payloadBytes?: number): GeneratedEvent {
  const kind = pick(EVENT_KINDS);
  const payload: Record<string, unknown> = {
    user_id: `u_${int(200_000)}`,
    session_id: hex(16),
    action: kind,
    at: new Date().toISOString(),
    attributes: {
      page: `/${pick(PAGES)}/${int(5000)}`,
      referrer: pick(REFERRERS),
      device: { os: pick(OSES), version: `${int(20)}.${int(10)}` },
      cart: { items: int(12), total_cents: int(250_000) },
    },
    ip: `10.${int(256)}.${int(256)}.${int(256)}`,
    trace_id: hex(32),
  };
  if (payloadBytes !== undefined) {
    const missing = payloadBytes - JSON.stringify(payload).length - ',"note":""'.length;
    if (missing > 0) payload.note = hex(missing);
  }
  return { kind, payload };
}

export function makeBatch(size: number, payloadBytes?: number): GeneratedEvent[] {
  return Array.from({ length: size }, () => makeEvent(payloadBytes));
}
