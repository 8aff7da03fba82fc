// {{NAME}}: a cnode service plugin ({{ID}}).
//
// Routes (the node serves them at /v1/services/{{ID}}/…):
// - GET /: counts its visits in the plugin's private key-value store and
//   answers {"plugin": "{{ID}}", "visits": N}.
// - GET /notices?region=u33d: the region's newest org.cnode.notices records.
//
// Every call runs in a fresh instance: keep state in kv or in records, never
// in globals. How WIT types look here: records are objects with camelCase
// fields, list<u8> is a Uint8Array, u64 is a BigInt, option<T> is the value
// or undefined, and an import returning result<T, error> returns T or
// throws with the WIT error ({code, message}) as the exception's `payload`.

import { get, set } from 'cnode:plugin/kv@0.1.0';
import { query } from 'cnode:plugin/records@0.1.0';
import { log } from 'cnode:plugin/log@0.1.0';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function reply(status, value) {
  return {
    status,
    headers: [['content-type', 'application/json']],
    body: encoder.encode(JSON.stringify(value)),
  };
}

// A failed host call as an answer: `denied` (the user did not grant the
// capability) is 403, a bad argument 400, anything else 502.
function hostError(e) {
  const err = e && typeof e === 'object' && 'payload' in e ? e.payload : { code: 'internal', message: String(e) };
  const status = err.code === 'denied' ? 403 : err.code === 'invalid' ? 400 : 502;
  return reply(status, { error: String(err.message) });
}

function visits() {
  try {
    const stored = get('visits');
    const count = (stored === undefined ? 0 : Number(decoder.decode(stored))) + 1;
    set('visits', encoder.encode(String(count)));
    log('debug', `visit ${count}`);
    return reply(200, { plugin: '{{ID}}', visits: count });
  } catch (e) {
    return hostError(e);
  }
}

function notices(rawQuery) {
  const region = new URLSearchParams(rawQuery).get('region');
  if (!region) {
    return reply(400, { error: 'give ?region=GEOHASH (4 characters)' });
  }
  try {
    const page = query({
      region,
      near: undefined,
      text: undefined,
      collection: 'org.cnode.notices',
      author: undefined,
      sinceMs: undefined,
      untilMs: undefined,
      limit: 20,
      cursor: undefined,
    });
    const list = page.records.map((r) => ({
      id: r.id,
      created_at: Number(r.createdAt),
      body: JSON.parse(r.bodyJson),
    }));
    return reply(200, { notices: list });
  } catch (e) {
    return hostError(e);
  }
}

export function handle(request) {
  const known = request.path === '/' || request.path === '/notices';
  if (!known) return reply(404, { error: 'no such route' });
  if (request.method !== 'GET') return reply(405, { error: 'use GET' });
  return request.path === '/' ? visits() : notices(request.query);
}

export function onRecord(record) {}

export function tick() {}
