// Unit tests of the board's logic against a fake host, in Node:
//   node --test test/        (or: npm test)

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { COLLECTION, MAX_BODY, MAX_TITLE, handle, params } from '../src/board.js';

const NOW = 1_763_978_400_000;

/** Records in memory (newest first), like the node's query. */
function fakeHost({ deny } = {}) {
  const host = {
    records: [],
    queries: [],
    logs: [],
    clock: NOW,
    query(q) {
      host.queries.push(q);
      if (deny) throw { code: deny, message: 'no grant' };
      const words = (q.text ?? '').toLowerCase().split(/\s+/).filter(Boolean);
      const matching = host.records.filter((r) => {
        if (r.collection !== q.collection || !r.region.startsWith(q.region) || r.deleted) return false;
        const text = Object.values(JSON.parse(r.bodyJson)).join(' ').toLowerCase();
        return words.every((w) => text.includes(w));
      });
      const start = q.cursor === undefined ? 0 : Number(q.cursor);
      const end = Math.min(start + q.limit, matching.length);
      return {
        records: matching.slice(start, end),
        nextCursor: end < matching.length ? String(end) : undefined,
      };
    },
    publish(collection, key, geohash, bodyJson) {
      if (deny) throw { code: deny, message: 'no grant' };
      const id = String(host.records.length).padStart(64, '0');
      host.clock += 1;
      // A newer record in the same (author, collection, key) slot replaces the older one.
      host.records = host.records.filter((r) => !(r.collection === collection && r.key === key));
      host.records.unshift({
        id,
        author: 'did:key:z6MkNode',
        collection,
        key,
        region: geohash,
        createdAt: host.clock,
        deleted: false,
        bodyJson,
      });
      return id;
    },
    nowMs: () => host.clock,
    randomHex: (n) => String(host.records.length).padStart(2 * n, 'a'),
    log: (level, message) => host.logs.push([level, message]),
  };
  return host;
}

function request(method, url, body) {
  const [path, query = ''] = url.split('?');
  const text = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
  return { method, path, query, body: text, bodyBytes: Buffer.byteLength(text) };
}

function call(host, method, url, body) {
  const response = handle(host, request(method, url, body));
  return { ...response, json: JSON.parse(response.body) };
}

test('post then list, newest first', () => {
  const host = fakeHost();
  const first = call(host, 'POST', '/notices', { title: 'Water cut', body: 'Tuesday 9–12', region: 'w5q6u8g' });
  assert.equal(first.status, 201, first.body);
  assert.deepEqual(first.json, { id: first.json.id, key: 'notice-aaaaaaaaaaaaaaa0', region: 'w5q6', geohash: 'w5q6u8g' });
  const second = call(host, 'POST', '/notices', { title: 'Lost cat', region: 'W5Q6', key: 'cat' });
  assert.equal(second.status, 201);
  assert.equal(second.json.key, 'cat');

  const published = host.records.find((r) => r.key === 'cat');
  assert.equal(published.collection, COLLECTION);
  // The body fits the org.cnode.notices schema: exactly title and body.
  assert.deepEqual(JSON.parse(published.bodyJson), { title: 'Lost cat', body: '' });

  const list = call(host, 'GET', '/notices?region=w5q6');
  assert.equal(list.status, 200);
  assert.deepEqual(
    list.json.notices.map((n) => n.title),
    ['Lost cat', 'Water cut'],
  );
  const n = list.json.notices[1];
  assert.equal(n.body, 'Tuesday 9–12');
  assert.equal(n.region, 'w5q6');
  assert.equal(n.geohash, 'w5q6u8g');
  assert.equal(n.author, 'did:key:z6MkNode');
  assert.equal(typeof n.created_at, 'number');
  assert.equal(list.json.next_cursor, undefined);
  assert.deepEqual(host.queries.at(-1), { region: 'w5q6', text: undefined, collection: COLLECTION, limit: 50, cursor: undefined });
  assert.ok(host.logs.some(([level, m]) => level === 'info' && m.includes('published notice')));
});

test('paging with limit and cursor', () => {
  const host = fakeHost();
  for (let i = 0; i < 5; i++) call(host, 'POST', '/notices', { title: `n${i}`, region: 'u33d', key: `k${i}` });
  const page1 = call(host, 'GET', '/notices?region=u33d&limit=2');
  assert.deepEqual(page1.json.notices.map((n) => n.title), ['n4', 'n3']);
  assert.equal(page1.json.next_cursor, '2');
  const page2 = call(host, 'GET', `/notices?region=u33d&limit=2&cursor=${page1.json.next_cursor}`);
  assert.deepEqual(page2.json.notices.map((n) => n.title), ['n2', 'n1']);
  for (const bad of ['0', '201', 'x', '-1', '1.5', '']) {
    const r = call(host, 'GET', `/notices?region=u33d&limit=${bad}`);
    assert.equal(r.status, 400, bad);
    assert.match(r.json.error, /limit/);
  }
});

test('same key replaces the notice', () => {
  const host = fakeHost();
  call(host, 'POST', '/notices', { title: 'Draft', region: 'u33d', key: 'k' });
  call(host, 'POST', '/notices', { title: 'Final', region: 'u33d', key: 'k' });
  assert.deepEqual(call(host, 'GET', '/notices?region=u33d').json.notices.map((n) => n.title), ['Final']);
});

test('search', () => {
  const host = fakeHost();
  call(host, 'POST', '/notices', { title: 'Water cut', body: 'Tuesday morning', region: 'w5q6' });
  call(host, 'POST', '/notices', { title: 'Market', body: 'Sunday water festival', region: 'w5q6' });
  call(host, 'POST', '/notices', { title: 'Water cut', body: 'elsewhere', region: 'u33d' });
  const r = call(host, 'GET', '/search?q=water+cut&region=w5q6');
  assert.equal(r.status, 200);
  assert.deepEqual(r.json.notices.map((n) => n.body), ['Tuesday morning']);
  assert.equal(host.queries.at(-1).text, 'water cut');
  const both = call(host, 'GET', '/search?q=%77ater&region=w5q6');
  assert.equal(both.json.notices.length, 2);
  for (const [url, message] of [
    ['/search?region=w5q6', /q is required/],
    ['/search?q=+++&region=w5q6', /q is required/],
    [`/search?q=${'x'.repeat(201)}&region=w5q6`, /q is longer/],
    ['/search?q=water', /region is required/],
    ['/search?q=water&region=w5q', /not a region/],
    ['/search?q=%E0%A4&region=w5q6', /malformed/],
  ]) {
    const bad = call(host, 'GET', url);
    assert.equal(bad.status, 400, url);
    assert.match(bad.json.error, message, url);
  }
});

test('post validation', () => {
  const cases = [
    ['not json', /not JSON/],
    ['[1]', /JSON object/],
    ['null', /JSON object/],
    [{ body: 'b', region: 'w5q6' }, /title is required/],
    [{ title: 5, region: 'w5q6' }, /title must be a string/],
    [{ title: '   ', region: 'w5q6' }, /title must not be empty/],
    [{ title: 'x'.repeat(MAX_TITLE + 1), region: 'w5q6' }, /title is longer than 200/],
    [{ title: 't', body: 'b'.repeat(MAX_BODY + 1), region: 'w5q6' }, /body is longer than 4000/],
    [{ title: 't', body: 7, region: 'w5q6' }, /body must be a string/],
    [{ title: 't' }, /region is required/],
    [{ title: 't', region: 'w5q' }, /region must be a geohash/],
    [{ title: 't', region: 'w5q6u8g1' }, /region must be a geohash/],
    [{ title: 't', region: 'w5qa' }, /region must be a geohash/],
    [{ title: 't', region: 42 }, /region must be a geohash/],
    [{ title: 't', region: 'w5q6', key: '' }, /key must be 1 to 128 bytes/],
    [{ title: 't', region: 'w5q6', key: 'ก'.repeat(43) }, /key must be 1 to 128 bytes/],
    [{ title: 't', region: 'w5q6', key: 'a\nb' }, /control characters/],
    [{ title: 't', region: 'w5q6', key: 3 }, /key must be a string/],
    [{ title: 't', region: 'w5q6', price: 3 }, /unknown field "price"/],
  ];
  for (const [body, message] of cases) {
    const host = fakeHost();
    const r = call(host, 'POST', '/notices', body);
    assert.equal(r.status, 400, JSON.stringify(body).slice(0, 80));
    assert.match(r.json.error, message);
    assert.equal(host.records.length, 0);
  }
  // Limits count characters, not bytes or UTF-16 units.
  const host = fakeHost();
  assert.equal(call(host, 'POST', '/notices', { title: 'ก'.repeat(MAX_TITLE), region: 'w5q6' }).status, 201);
  assert.equal(call(host, 'POST', '/notices', { title: '😀'.repeat(MAX_TITLE), region: 'w5q6' }).status, 201);
  assert.equal(call(host, 'POST', '/notices', { title: 't', body: '😀'.repeat(MAX_BODY), region: 'w5q6' }).status, 201);
  // Too large before parsing; not UTF-8.
  const big = handle(host, { ...request('POST', '/notices', 'x'), bodyBytes: 40_000 });
  assert.equal(big.status, 413);
  const binary = handle(host, { ...request('POST', '/notices', 'x'), body: null });
  assert.equal(binary.status, 400);
  assert.match(JSON.parse(binary.body).error, /UTF-8/);
});

test('host errors become clear statuses', () => {
  for (const [code, status] of [
    ['denied', 403],
    ['invalid', 400],
    ['too-large', 413],
    ['unavailable', 503],
    ['internal', 500],
  ]) {
    const host = fakeHost({ deny: code });
    const post = call(host, 'POST', '/notices', { title: 't', region: 'w5q6' });
    assert.equal(post.status, status, code);
    assert.match(post.json.error, /no grant/);
    const list = call(host, 'GET', '/notices?region=w5q6');
    assert.equal(list.status, status, code);
  }
});

test('routes and methods', () => {
  const host = fakeHost();
  assert.equal(call(host, 'GET', '/').status, 404);
  assert.equal(call(host, 'GET', '/notices/x').status, 404);
  const del = call(host, 'DELETE', '/notices');
  assert.equal(del.status, 405);
  assert.deepEqual(del.headers.at(-1), ['allow', 'GET, POST']);
  assert.equal(call(host, 'POST', '/search', {}).status, 405);
  assert.equal(del.headers[0][1], 'application/json');
});

test('records that are not notices are skipped', () => {
  const host = fakeHost();
  call(host, 'POST', '/notices', { title: 'ok', region: 'w5q6' });
  host.records.push({ ...host.records[0], id: 'junk', key: 'junk', bodyJson: '{"title": 5}' });
  const r = call(host, 'GET', '/notices?region=w5q6');
  assert.deepEqual(r.json.notices.map((n) => n.title), ['ok']);
  assert.ok(host.logs.some(([level, m]) => level === 'warn' && m.includes('junk')));
});

test('an unexpected failure is a 500 and logged', () => {
  const host = fakeHost();
  host.query = () => {
    throw new TypeError('boom');
  };
  const r = call(host, 'GET', '/notices?region=w5q6');
  assert.equal(r.status, 500);
  // A thrown non-host error has no `code`: treated as internal.
  assert.match(r.json.error, /boom|failed/);
});

test('query string parsing', () => {
  assert.deepEqual([...params('a=1&b=x+y&a=2&c&=z&&d=%2B')], [
    ['a', '1'],
    ['b', 'x y'],
    ['c', ''],
    ['', 'z'],
    ['d', '+'],
  ]);
});
