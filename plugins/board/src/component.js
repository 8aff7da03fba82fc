// The board as a cnode:plugin `service` component: binds board.js to the
// host imports and exports `handle`, `onRecord` and `tick` (WIT names
// `handle`, `on-record`, `tick`).
//
// How WIT types look from JavaScript (componentize-js / jco conventions):
// records are objects with camelCase fields, `list<u8>` is a Uint8Array,
// `u64` is a BigInt, `option<T>` is the value or undefined, a
// `tuple<string, string>` is a two-element array, an enum is its name as a
// string, and a `result<T, error>` import returns T or throws (the error
// record is the exception's `payload`).

import { query, publish } from 'cnode:plugin/records@0.1.0';
import { log } from 'cnode:plugin/log@0.1.0';
import { nowMs } from 'cnode:plugin/clock@0.1.0';
import { bytes } from 'cnode:plugin/random@0.1.0';

import { handle as boardHandle } from './board.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** The error record of a failed import call. */
function hostError(e) {
  const payload = e && typeof e === 'object' && 'payload' in e ? e.payload : e;
  return payload && typeof payload === 'object' && typeof payload.code === 'string'
    ? { code: payload.code, message: String(payload.message ?? '') }
    : { code: 'internal', message: String(e) };
}

const host = {
  query(q) {
    let page;
    try {
      page = query({
        region: q.region,
        near: undefined,
        text: q.text,
        collection: q.collection,
        author: undefined,
        sinceMs: undefined,
        untilMs: undefined,
        limit: q.limit,
        cursor: q.cursor,
      });
    } catch (e) {
      throw hostError(e);
    }
    return {
      records: page.records.map((r) => ({
        id: r.id,
        author: r.author,
        collection: r.collection,
        key: r.key,
        region: r.region,
        createdAt: Number(r.createdAt),
        deleted: r.deleted,
        bodyJson: r.bodyJson,
      })),
      nextCursor: page.nextCursor,
    };
  },
  publish(collection, key, regionGeohash, bodyJson) {
    try {
      return publish(collection, key, regionGeohash, bodyJson, undefined);
    } catch (e) {
      throw hostError(e);
    }
  },
  nowMs() {
    return Number(nowMs());
  },
  randomHex(n) {
    return Array.from(bytes(n), (b) => b.toString(16).padStart(2, '0')).join('');
  },
  log(level, message) {
    log(level, message);
  },
};

/** WIT `handle: func(request) -> response`. */
export function handle(request) {
  let body;
  try {
    body = decoder.decode(request.body);
  } catch {
    body = null;
  }
  const response = boardHandle(host, {
    method: request.method,
    path: request.path,
    query: request.query,
    body,
    bodyBytes: request.body.length,
  });
  return { status: response.status, headers: response.headers, body: encoder.encode(response.body) };
}

/** WIT `on-record`: nothing to do — every request reads the records afresh. */
export function onRecord(_record) {}

/** WIT `tick`: nothing to do. */
export function tick() {}
