// The notice board's logic, free of the component model: `handle(host,
// request)` takes a plain request and a `host` object (the node's calls, see
// HOST below) and returns a plain response. `component.js` binds it to the
// cnode:plugin imports; the tests in ../test bind it to a fake host in Node.
//
// HOST — what `host` must provide (all synchronous):
//   query({ region, text?, collection, limit, cursor? }) -> { records, nextCursor? }
//       records: [{ id, author, collection, key, region, createdAt (number),
//                   deleted, bodyJson }], newest first
//   publish(collection, key, regionGeohash, bodyJson) -> record id
//   nowMs() -> number
//   randomHex(bytes) -> string
//   log(level, message)            level: 'debug' | 'info' | 'warn' | 'error'
// query and publish throw { code, message } on failure, code being a WIT
// error-code: 'denied', 'not-found', 'invalid', 'too-large', 'unavailable',
// 'internal'.

/** The collection the board reads and writes. */
export const COLLECTION = 'org.cnode.notices';
/** Longest title, characters (Unicode code points, as the node counts). */
export const MAX_TITLE = 200;
/** Longest body, characters. The node allows 8000; a board notice is short. */
export const MAX_BODY = 4000;
/** Longest search text, characters. */
export const MAX_QUERY = 200;
/** Longest key, bytes (the node's limit). */
export const MAX_KEY_BYTES = 128;
/** Largest POST body, bytes: 4000 characters of 4 bytes and some room. */
export const MAX_REQUEST_BYTES = 32 * 1024;
/** Notices per page when `limit` is not given, and the largest `limit`. */
export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 200;

const GEOHASH = /^[0-9bcdefghjkmnpqrstuvwxyz]+$/;
const POST_FIELDS = ['title', 'body', 'region', 'key'];

/** A request the board refuses: becomes `{"error": message}` with `status`. */
class Refusal extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const bad = (message) => new Refusal(400, message);

/**
 * Answers one request: `{ method, path, query, body, bodyBytes }` where
 * `body` is the request body as text (null when it is not UTF-8) and
 * `bodyBytes` its size in bytes.
 */
export function handle(host, request) {
  try {
    switch (request.path) {
      case '/notices':
        if (request.method === 'GET') return list(host, params(request.query));
        if (request.method === 'POST') return post(host, request);
        return notAllowed(request.method, 'GET, POST');
      case '/search':
        if (request.method === 'GET') return search(host, params(request.query));
        return notAllowed(request.method, 'GET');
      default:
        throw new Refusal(404, 'no such page: the board answers GET/POST /notices and GET /search');
    }
  } catch (e) {
    if (e instanceof Refusal) return json(e.status, { error: e.message });
    host.log('error', `board: unexpected failure: ${e && e.stack ? e.stack : e}`);
    return json(500, { error: 'the board failed; see the node log' });
  }
}

function notAllowed(method, allow) {
  const response = json(405, { error: `${method} is not allowed here (allowed: ${allow})` });
  response.headers.push(['allow', allow]);
  return response;
}

/** `POST /notices`: `{title, body?, region, key?}` → 201 `{id, key, region, geohash}`. */
function post(host, { body: text, bodyBytes }) {
  if (bodyBytes > MAX_REQUEST_BYTES) {
    throw new Refusal(413, `the request body is over ${MAX_REQUEST_BYTES} bytes`);
  }
  if (text === null) throw bad('the request body is not UTF-8 text');
  let input;
  try {
    input = JSON.parse(text);
  } catch {
    throw bad('the request body is not JSON: send {"title": …, "body": …, "region": …}');
  }
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw bad('the request body must be a JSON object: {"title": …, "body": …, "region": …, "key"?: …}');
  }
  const unknown = Object.keys(input).find((k) => !POST_FIELDS.includes(k));
  if (unknown !== undefined) {
    throw bad(`unknown field ${JSON.stringify(unknown.slice(0, 40))}: a notice has title, body, region and key`);
  }

  const title = input.title;
  if (title === undefined) throw bad('title is required');
  if (typeof title !== 'string') throw bad('title must be a string');
  if (title.trim() === '') throw bad('title must not be empty');
  if (chars(title) > MAX_TITLE) throw bad(`title is longer than ${MAX_TITLE} characters`);

  const body = input.body === undefined ? '' : input.body;
  if (typeof body !== 'string') throw bad('body must be a string');
  if (chars(body) > MAX_BODY) throw bad(`body is longer than ${MAX_BODY} characters`);

  if (input.region === undefined) throw bad('region is required: a geohash of 4 to 7 characters, like w5q6 or w5q6u8g');
  const geohash = typeof input.region === 'string' ? input.region.trim().toLowerCase() : '';
  if (geohash.length < 4 || geohash.length > 7 || !GEOHASH.test(geohash)) {
    throw bad('region must be a geohash of 4 to 7 characters (digits and b-z without a, i, l, o), like w5q6');
  }

  let key = input.key;
  if (key === undefined) {
    key = `notice-${host.randomHex(8)}`;
  } else {
    if (typeof key !== 'string') throw bad('key must be a string');
    const bytes = utf8Length(key);
    if (bytes === 0 || bytes > MAX_KEY_BYTES) throw bad(`key must be 1 to ${MAX_KEY_BYTES} bytes`);
    if (/[\u0000-\u001f\u007f-\u009f]/.test(key)) throw bad('key must not hold control characters');
  }

  const id = callHost(() => host.publish(COLLECTION, key, geohash, JSON.stringify({ title, body })), 'publish');
  host.log('info', `board: published notice ${id} in ${geohash.slice(0, 4)}`);
  return json(201, { id, key, region: geohash.slice(0, 4), geohash });
}

/** `GET /notices?region=…[&limit=N][&cursor=…]`: newest first. */
function list(host, p) {
  return page(host, { region: region(p), limit: limit(p), cursor: cursor(p) });
}

/** `GET /search?q=…&region=…[&limit=N][&cursor=…]`: the node's text match. */
function search(host, p) {
  const q = p.get('q');
  if (q === undefined || q.trim() === '') throw bad('q is required: the words to search for, like ?q=water+cut');
  if (chars(q) > MAX_QUERY) throw bad(`q is longer than ${MAX_QUERY} characters`);
  return page(host, { region: region(p), text: q.trim(), limit: limit(p), cursor: cursor(p) });
}

function page(host, { region, text, limit, cursor }) {
  const result = callHost(() => host.query({ region, text, collection: COLLECTION, limit, cursor }), 'query');
  const notices = [];
  for (const record of result.records) {
    const notice = toNotice(record);
    if (notice) notices.push(notice);
    else host.log('warn', `board: record ${record.id} is not a notice; skipped`);
  }
  const out = { notices };
  if (result.nextCursor !== undefined && result.nextCursor !== null) out.next_cursor = result.nextCursor;
  return json(200, out);
}

/** A record as served, or null when it is not a notice. */
export function toNotice(record) {
  if (record.deleted || record.collection !== COLLECTION) return null;
  let body;
  try {
    body = JSON.parse(record.bodyJson);
  } catch {
    return null;
  }
  if (body === null || typeof body !== 'object' || typeof body.title !== 'string') return null;
  return {
    id: record.id,
    key: record.key,
    author: record.author,
    region: record.region.slice(0, 4),
    geohash: record.region,
    created_at: record.createdAt,
    title: body.title,
    body: typeof body.body === 'string' ? body.body : '',
  };
}

/** Runs a host call, turning its error into the answer the client sees. */
function callHost(call, what) {
  try {
    return call();
  } catch (e) {
    const code = e && typeof e === 'object' && typeof e.code === 'string' ? e.code : 'internal';
    const message = e && typeof e === 'object' && typeof e.message === 'string' ? e.message : String(e);
    switch (code) {
      case 'denied':
        throw new Refusal(403, `this node does not let the board ${what} ${COLLECTION} records here: ${message}`);
      case 'invalid':
        throw new Refusal(400, `the node refused the ${what}: ${message}`);
      case 'too-large':
        throw new Refusal(413, `the node refused the ${what} as too large: ${message}`);
      case 'unavailable':
        throw new Refusal(503, `the node cannot ${what} records right now: ${message}`);
      default:
        throw new Refusal(500, `the records ${what} failed: ${message}`);
    }
  }
}

function region(p) {
  const r = p.get('region');
  if (r === undefined) throw bad('region is required: add ?region= and a 4-character geohash, like ?region=w5q6');
  const lower = r.trim().toLowerCase();
  if (lower.length !== 4 || !GEOHASH.test(lower)) {
    throw bad(
      `region ${JSON.stringify(r.slice(0, 20))} is not a region: expected a 4-character geohash (digits and b-z without a, i, l, o), like w5q6`,
    );
  }
  return lower;
}

function limit(p) {
  const text = p.get('limit');
  if (text === undefined) return DEFAULT_LIMIT;
  const n = /^[0-9]{1,4}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= MAX_LIMIT)) throw bad(`limit must be a whole number from 1 to ${MAX_LIMIT}`);
  return n;
}

function cursor(p) {
  const c = p.get('cursor');
  if (c === undefined) return undefined;
  if (c === '' || c.length > 1024) throw bad('cursor must be the next_cursor of the previous page');
  return c;
}

/** The query string's parameters (first value wins), `+` as space. */
export function params(query) {
  const map = new Map();
  for (const part of query.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const [name, value] = eq < 0 ? [part, ''] : [part.slice(0, eq), part.slice(eq + 1)];
    let n, v;
    try {
      n = decodeURIComponent(name.replace(/\+/g, ' '));
      v = decodeURIComponent(value.replace(/\+/g, ' '));
    } catch {
      throw bad('the query string is malformed (a bad %-escape)');
    }
    if (!map.has(n)) map.set(n, v);
  }
  return map;
}

/** Length in Unicode code points (what the node's limits count). */
function chars(s) {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

function utf8Length(s) {
  let n = 0;
  for (const c of s) {
    const cp = c.codePointAt(0);
    n += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  }
  return n;
}

function json(status, value) {
  return {
    status,
    headers: [['content-type', 'application/json']],
    body: JSON.stringify(value),
  };
}
