'use strict';

// (c) Every operation, run by zapier-platform-core's app tester against a live
// instance of our service backed by the fake DumplingAI.
//
//   API_BASE_URL       our service, e.g. http://127.0.0.1:5000
//   FAKE_UPSTREAM_URL  the fake DumplingAI (its /_fake/... control API)
//   TEST_API_KEY       a key the fake knows, with unlimited credits
//
// Skipped (with a message) when API_BASE_URL is unset. tests/test_zapier_app.py
// starts both servers and runs this file.
// Before loading zapier-platform-core: quiets its per-invocation memory log.
process.env.NODE_ENV = process.env.NODE_ENV || 'test';

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const crypto = require('node:crypto');

const zapier = require('zapier-platform-core');
const App = require('../index');
const { apiUrl } = require('../lib/api');
const FIELDS = require('../fields.json');

const { API_BASE_URL, FAKE_UPSTREAM_URL, TEST_API_KEY } = process.env;
const SKIP = API_BASE_URL
  ? FAKE_UPSTREAM_URL && TEST_API_KEY
    ? false
    : 'integration: FAKE_UPSTREAM_URL and TEST_API_KEY are required with API_BASE_URL'
  : 'integration: API_BASE_URL is unset (run tests/test_zapier_app.py, or set API_BASE_URL, FAKE_UPSTREAM_URL and TEST_API_KEY)';

const appTester = zapier.createAppTester(App);
const authData = { api_key: TEST_API_KEY };
const run = (method, bundle = {}) => appTester(method, { authData, ...bundle });

const ACCOUNT_KEYS = FIELDS.account.map((f) => f.key).sort();
const EVENT_KEYS = FIELDS.followEvent.map((f) => f.key).sort();
// Unique per run: the service and the fake keep state between runs.
const RUN = `${Date.now().toString(36)}${crypto.randomBytes(2).toString('hex')}`;
const handleFor = (name) => `zap_${name}_${RUN}`;

// --- the fake's control API ------------------------------------------------------
const fake = async (method, path, body) => {
  const response = await fetch(`${FAKE_UPSTREAM_URL.replace(/\/+$/, '')}/_fake/${path}`, {
    method,
    headers: { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.equal(response.status, 200, `fake ${method} ${path}: ${text}`);
  return text ? JSON.parse(text) : null;
};

const rejection = async (promise) => {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  return assert.fail('expected the operation to fail');
};

const appErrorBody = (err) => {
  assert.equal(err.name, 'AppError', `${err.name}: ${err.message}`);
  return JSON.parse(err.message); // {message, code, status}
};

// A local webhook target (the service allows loopback targets in tests).
const startTarget = () =>
  new Promise((resolve) => {
    const received = [];
    const server = http.createServer((req, res) => {
      let raw = '';
      req.on('data', (chunk) => (raw += chunk));
      req.on('end', () => {
        received.push({ headers: req.headers, body: raw });
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end('{"status":"ok"}');
      });
    });
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, received, url: `http://127.0.0.1:${server.address().port}/zapier-hook/${RUN}` }),
    );
  });

const waitFor = async (predicate, seconds) => {
  const until = Date.now() + seconds * 1000;
  while (Date.now() < until) {
    if (predicate()) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return predicate();
};

// --- authentication -------------------------------------------------------------------
test('auth test answers ok with a label; the connection label hides the key', { skip: SKIP }, async () => {
  const result = await run(App.authentication.test);
  assert.equal(result.ok, true);
  assert.equal(typeof result.label, 'string');
  assert.ok(!result.label.includes(TEST_API_KEY) || TEST_API_KEY.length <= 4, result.label);
  const label = await run(App.authentication.connectionLabel, { inputData: result });
  assert.equal(label, result.label);
  assert.ok(label.length > 0);
});

test('a wrong key is an ExpiredAuthError carrying the service sentence', { skip: SKIP }, async () => {
  const err = await rejection(
    appTester(App.authentication.test, { authData: { api_key: `wrong-${RUN}` } }),
  );
  assert.equal(err.name, 'ExpiredAuthError', `${err.name}: ${err.message}`);
  assert.ok(err.message.length > 10, err.message);
});

// --- the action -------------------------------------------------------------------------
test('Find Accounts a User Follows: one result whose accounts are line items, across cursors', { skip: SKIP }, async () => {
  const handle = handleFor('list');
  await fake('POST', `handles/${handle}/seed`, { n: 40 });
  const perform = App.searches.list_following.operation.perform;

  const results = await run(perform, { inputData: { handle: `@${handle}`, count: '10', limit: 25 } });
  assert.ok(Array.isArray(results) && results.length === 1, 'a search answers an array: here one list');
  const [first] = results;
  assert.equal(first.handle, handle);
  assert.equal(first.following.length, 25);
  assert.equal(first.count, 25);
  assert.equal(first.pages, 3);
  assert.equal(first.hasMore, true);
  assert.equal(typeof first.nextMinTime, 'number');
  for (const account of first.following) {
    assert.deepEqual(Object.keys(account).sort(), ACCOUNT_KEYS);
    assert.equal(account.profileUrl, `https://www.tiktok.com/@${account.uniqueId}`);
  }
  // Every output field of the action is in a live answer.
  const outputKeys = App.searches.list_following.operation.outputFields.map((f) => f.key);
  for (const key of outputKeys) {
    const [head, child] = key.split('[]');
    assert.ok(head in first, key);
    if (child) assert.ok(child in first[head][0], key);
  }

  const [rest] = await run(perform, {
    inputData: { handle: `https://www.tiktok.com/@${handle}`, minTime: String(first.nextMinTime), limit: 100, count: 30 },
  });
  assert.equal(rest.following.length, 15);
  assert.equal(rest.hasMore, false);
  assert.equal(rest.nextMinTime, null);
  const seen = new Set(first.following.map((a) => a.id));
  for (const account of rest.following) assert.ok(!seen.has(account.id), 'no overlap between runs');
});

test('a bad handle is a 400 naming the field and its message', { skip: SKIP }, async () => {
  const err = await rejection(
    run(App.searches.list_following.operation.perform, { inputData: { handle: 'not a handle!!', limit: 5000 } }),
  );
  const body = appErrorBody(err);
  assert.equal(body.status, 400);
  assert.equal(body.code, 'invalid_request');
  assert.match(body.message, /^TikTok Handle: \S.+ Maximum Accounts: \S/, body.message);
  assert.doesNotMatch(body.message, /see 'fields'/);
});

// --- error mapping through the live service -------------------------------------------
test('upstream 403 (no credits) -> 402 -> HaltedError', { skip: SKIP }, async () => {
  const handle = handleFor('halt');
  await fake('POST', `handles/${handle}/seed`, { n: 3 });
  await fake('POST', 'faults', { status: 403, times: 1 });
  const err = await rejection(
    run(App.searches.list_following.operation.perform, { inputData: { handle } }),
  );
  assert.equal(err.name, 'HaltedError', `${err.name}: ${err.message}`);
  assert.ok(err.message.length > 10);
});

test('a key without credits -> HaltedError', { skip: SKIP }, async () => {
  const key = `zapier-broke-${RUN}`;
  await fake('POST', 'keys', { key, credits: 0 });
  const handle = handleFor('broke');
  await fake('POST', `handles/${handle}/seed`, { n: 3 });
  const err = await rejection(
    appTester(App.searches.list_following.operation.perform, { authData: { api_key: key }, inputData: { handle } }),
  );
  assert.equal(err.name, 'HaltedError', `${err.name}: ${err.message}`);
});

test('upstream 503 -> 429 with Retry-After -> ThrottledError with the delay', { skip: SKIP }, async () => {
  const handle = handleFor('slow');
  await fake('POST', `handles/${handle}/seed`, { n: 3 });
  // A long Retry-After: the service does not retry within Zapier's time budget.
  await fake('POST', 'faults', { status: 503, times: 1, headers: { 'Retry-After': '60' } });
  const err = await rejection(
    run(App.searches.list_following.operation.perform, { inputData: { handle } }),
  );
  assert.equal(err.name, 'ThrottledError', `${err.name}: ${err.message}`);
  const { message, delay } = JSON.parse(err.message);
  assert.ok(message && !/^The server returned 429/.test(message), `our sentence, not core's: ${message}`);
  assert.ok(Number.isInteger(delay) && delay > 0, `delay ${delay}`);
});

test('upstream 404 -> AppError 404 with the service sentence', { skip: SKIP }, async () => {
  const handle = handleFor('missing');
  await fake('POST', 'faults', { status: 404, times: 1 });
  const err = await rejection(
    run(App.searches.list_following.operation.perform, { inputData: { handle } }),
  );
  const body = appErrorBody(err);
  assert.equal(body.status, 404);
  assert.ok(body.message.length > 10);
});

// --- polling trigger ------------------------------------------------------------------------
test('New Followed Account: baseline samples first, then the new follow first', { skip: SKIP }, async () => {
  const handle = handleFor('poll');
  await fake('POST', `handles/${handle}/seed`, { n: 5 });
  const perform = App.triggers.new_following.operation.perform;

  const baseline = await run(perform, { inputData: { handle: `@${handle}` } });
  assert.ok(Array.isArray(baseline));
  assert.equal(baseline.length, 2); // a few samples of the first page (the service's BASELINE_SAMPLES)
  for (const item of baseline) {
    assert.deepEqual(Object.keys(item).sort(), EVENT_KEYS);
    assert.equal(item.sequence, 0);
    assert.equal(item.followedBy, handle);
    assert.ok(!Number.isNaN(Date.parse(item.detectedAt)));
  }
  assert.equal(new Set(baseline.map((i) => i.id)).size, 2, 'unique ids (Zapier dedupes on id)');

  const entry = await fake('POST', `handles/${handle}/follow`, {});
  const next = await run(perform, { inputData: { handle } });
  assert.equal(next[0].id, String(entry.user.id), 'the new follow comes first');
  assert.equal(next[0].uniqueId, entry.user.uniqueId);
  assert.ok(next[0].sequence > 0);
  assert.deepEqual(Object.keys(next[0]).sort(), EVENT_KEYS);
  // Zapier's dedupe: only the new id is new.
  const known = new Set(baseline.map((i) => i.id));
  assert.deepEqual(next.filter((i) => !known.has(i.id)).map((i) => i.id), [String(entry.user.id)]);

  // bundle.meta.limit is passed on as `limit`.
  const limited = await run(perform, { inputData: { handle }, meta: { limit: 2 } });
  assert.equal(limited.length, 2);
  assert.equal(limited[0].id, String(entry.user.id));
});

test('New Followed Account (eventId): filters applied by the service, items deduped on eventId', { skip: SKIP }, async () => {
  const handle = handleFor('pollf');
  const seeded = await fake('POST', `handles/${handle}/seed`, { n: 25 });
  // The two samples the first poll shows: one verified account, one not.
  await fake('POST', `handles/${handle}/follow`, { account: seeded.find((e) => !e.user.verified) });
  await fake('POST', `handles/${handle}/follow`, { account: seeded.find((e) => e.user.verified) });
  const op = App.triggers.new_followed_account.operation;
  const all = await run(op.perform, { inputData: { handle } });
  const verified = await run(op.perform, { inputData: { handle, verifiedOnly: true } });
  assert.equal(all.length, 2);
  assert.ok(verified.length > 0 && verified.length < all.length, `${verified.length} verified of ${all.length}`);
  assert.ok(verified.every((i) => i.verified === true));
  assert.deepEqual(verified.map((i) => i.eventId), all.filter((i) => i.verified).map((i) => i.eventId));
  for (const item of all) {
    assert.deepEqual(Object.keys(item).sort(), EVENT_KEYS);
    assert.equal(item.event, 'new_following');
  }
  assert.equal(new Set(all.map((i) => i.eventId)).size, all.length, 'unique eventIds (Zapier dedupes on them)');
  const entry = await fake('POST', `handles/${handle}/follow`, {});
  const next = await run(op.perform, { inputData: { handle, keywords: [entry.user.uniqueId.toUpperCase()] } });
  // keywords match the new account's username (the ids of older fake users are prefixes of none of it)
  assert.equal(next[0].id, String(entry.user.id));
  assert.match(next[0].eventId, /^[0-9]+$/);
  const known = new Set(all.map((i) => i.eventId));
  assert.ok(!known.has(next[0].eventId));
});

test('Find Whether a User Follows an Account: found on page 1, and a complete "no"', { skip: SKIP }, async () => {
  const handle = handleFor('check');
  const seeded = await fake('POST', `handles/${handle}/seed`, { n: 30 });
  const op = App.searches.check_following.operation;
  const target = seeded[3];
  const [found] = await run(op.perform, { inputData: { handle, target: `https://www.tiktok.com/@${target.user.uniqueId}` } });
  assert.deepEqual(found, { follows: true, account: found.account, complete: true, pagesRead: 1 });
  assert.equal(found.account.id, String(target.user.id));
  assert.deepEqual(Object.keys(found.account).sort(), ACCOUNT_KEYS);
  const [no] = await run(op.perform, { inputData: { handle, target: '@nobody.follows.this' } });
  assert.deepEqual(no, { follows: false, account: null, complete: true, pagesRead: 1 });
  const err = await rejection(run(op.perform, { inputData: { handle, target: 'not a handle' } }));
  assert.match(err.message, /Followed Account: /);
});

test('New Followed Account (Instant): the filters are stored with the subscription', { skip: SKIP }, async () => {
  const op = App.triggers.new_following_instant.operation;
  const handle = handleFor('hookf');
  await fake('POST', `handles/${handle}/seed`, { n: 2 });
  const subscribeData = await run(op.performSubscribe, {
    inputData: { handle, excludePrivate: true, minFollowers: '100', keywords: ['food', 'travel'] },
    targetUrl: 'http://127.0.0.1:9/filters',
  });
  assert.deepEqual(subscribeData.filters, { excludePrivate: true, minFollowers: 100, keywords: ['food', 'travel'] });
  assert.deepEqual(await run(op.performUnsubscribe, { subscribeData }), { id: subscribeData.id, deleted: true });
});

test('Watchlist: New Followed Account over three handles, two following the same account', { skip: SKIP }, async () => {
  const handles = ['wla', 'wlb', 'wlc'].map(handleFor);
  for (const handle of handles) await fake('POST', `handles/${handle}/seed`, { n: 2 });
  const op = App.triggers.new_followed_account.operation;
  // A list field; a mapped value may arrive as a comma-separated string.
  const first = await run(op.perform, { inputData: { handles: `@${handles[0]}, ${handles[1]},${handles[2]}` } });
  assert.equal(first.length, 6); // each handle's baseline samples (they seed Zapier's dedupe)
  assert.deepEqual(new Set(first.map((i) => i.followedBy)), new Set(handles));
  const shared = await fake('POST', `handles/${handles[0]}/follow`, {});
  await fake('POST', `handles/${handles[1]}/follow`, { account: shared });
  const other = await fake('POST', `handles/${handles[2]}/follow`, {});
  const next = await run(op.perform, { inputData: { handles } });
  const fresh = next.filter((i) => i.sequence > 0);
  assert.deepEqual(fresh.map((i) => `${i.id}@${i.followedBy}`).sort(), [
    `${shared.user.id}@${handles[0]}`, `${shared.user.id}@${handles[1]}`, `${other.user.id}@${handles[2]}`].sort());
  assert.equal(new Set(next.map((i) => i.eventId)).size, next.length, 'unique eventIds: two items for one account');
  assert.deepEqual(next.slice(0, 3), fresh, 'the new follows first (newest first across handles)');
  const err = await rejection(run(op.perform, { inputData: { handle: handles[0], handles: [handles[1]] } }));
  assert.equal(appErrorBody(err).status, 400);
  assert.match(appErrorBody(err).message, /handles/);
});

test('Watchlist: New Followed Account (Instant) subscribes every handle under one id', { skip: SKIP }, async () => {
  const handles = ['wlh1', 'wlh2'].map(handleFor);
  for (const handle of handles) await fake('POST', `handles/${handle}/seed`, { n: 2 });
  const op = App.triggers.new_following_instant.operation;
  const subscribeData = await run(op.performSubscribe, { inputData: { handles }, targetUrl: 'http://127.0.0.1:9/watchlist' });
  assert.deepEqual(subscribeData.handles, handles);
  assert.match(subscribeData.secret, /^whsec_/);
  assert.deepEqual(await run(op.performUnsubscribe, { subscribeData }), { id: subscribeData.id, deleted: true });
  assert.deepEqual(await run(op.performUnsubscribe, { subscribeData }), { id: subscribeData.id, deleted: false });
});

// --- REST hook trigger --------------------------------------------------------------------------
test('New Unfollow: the first poll records the list; sweepEvery out of range is a 400 naming it', { skip: SKIP }, async () => {
  const handle = handleFor('unf');
  await fake('POST', `handles/${handle}/seed`, { n: 120 });
  const perform = App.triggers.new_unfollow.operation.perform;
  assert.deepEqual(await run(perform, { inputData: { handle, sweepEvery: '24' }, meta: { limit: 10 } }), []);
  const err = await rejection(run(perform, { inputData: { handle, sweepEvery: '200' } }));
  const body = appErrorBody(err);
  assert.equal(body.status, 400);
  assert.match(body.message, /Check for Unfollows Every|sweepEvery/, body.message);
});

test('New Unfollow (Instant): subscribes for unfollows, unsubscribes', { skip: SKIP }, async () => {
  const handle = handleFor('unfh');
  await fake('POST', `handles/${handle}/seed`, { n: 10 });
  const op = App.triggers.new_unfollow_instant.operation;
  const subscribeData = await run(op.performSubscribe, {
    inputData: { handle, sweepEvery: 6 }, targetUrl: 'http://127.0.0.1:9/unfollow', // never called: no unfollow happens here
  });
  assert.equal(subscribeData.event, 'unfollowed');
  assert.equal(subscribeData.handle, handle);
  assert.deepEqual(await run(op.performList, { inputData: { handle } }), []);
  assert.deepEqual(await run(op.performUnsubscribe, { subscribeData }), { id: subscribeData.id, deleted: true });
});

test('New Followed Account (Instant): subscribe, list, perform, unsubscribe', { skip: SKIP }, async (t) => {
  const op = App.triggers.new_following_instant.operation;
  const handle = handleFor('hook');
  await fake('POST', `handles/${handle}/seed`, { n: 4 });
  const target = await startTarget();
  t.after(() => target.server.close());

  const subscribeData = await run(op.performSubscribe, {
    inputData: { handle: `@${handle}` },
    targetUrl: target.url,
  });
  assert.equal(typeof subscribeData.id, 'string');
  assert.equal(subscribeData.handle, handle);
  assert.equal(subscribeData.targetUrl, target.url);
  assert.equal(subscribeData.platform, 'zapier');
  assert.match(subscribeData.secret, /^whsec_/);
  assert.equal(subscribeData.status, 'active');
  assert.equal(subscribeData.checkEvery, null, 'no Check Every picked: the service default');

  const listHooks = async (z) => (await z.request({ url: apiUrl('hooks') })).data;
  const hooks = await run(listHooks);
  assert.ok(hooks.some((h) => h.id === subscribeData.id), 'the subscription is listed');

  // performList: the polling route, items shaped exactly like the hook payload.
  const samples = await run(op.performList, { inputData: { handle } });
  assert.equal(samples.length, 2); // the baseline samples (the service's BASELINE_SAMPLES)
  for (const item of samples) assert.deepEqual(Object.keys(item).sort(), EVENT_KEYS);

  const entry = await fake('POST', `handles/${handle}/follow`, {});
  const listed = await run(op.performList, { inputData: { handle } });
  assert.equal(listed[0].id, String(entry.user.id));

  // perform: one delivery = one event, accepted only with the subscription's signature.
  const unsigned = await run(op.perform, {
    inputData: { handle },
    subscribeData,
    cleanedRequest: listed[0],
    rawRequest: { method: 'POST', headers: {}, content: JSON.stringify(listed[0]) },
  });
  assert.deepEqual(unsigned, [], 'an unsigned delivery is dropped');

  // With the service's worker running (EXPECT_WEBHOOK_DELIVERY=1), a real
  // delivery arrives: exactly one event, shaped like a polling item.
  const expectDelivery = process.env.EXPECT_WEBHOOK_DELIVERY === '1';
  if (await waitFor(() => target.received.length > 0, expectDelivery ? 30 : 2)) {
    const body = JSON.parse(target.received[0].body);
    assert.ok(body && !Array.isArray(body), 'one event per delivery');
    assert.deepEqual(Object.keys(body).sort(), EVENT_KEYS);
    assert.equal(body.id, String(entry.user.id));
    assert.equal(body.followedBy, handle);
    // The real signed delivery, as Zapier hands it to perform: named fields, verified.
    const rawRequest = { method: 'POST', headers: target.received[0].headers, content: target.received[0].body };
    const fromHook = await run(op.perform, { subscribeData, cleanedRequest: body, rawRequest });
    assert.deepEqual(fromHook, [body]);
    const zapierStyle = Object.fromEntries(Object.entries(rawRequest.headers).map(([k, v]) => [`Http-${k}`, v]));
    assert.deepEqual(await run(op.perform, { subscribeData, rawRequest: { ...rawRequest, headers: zapierStyle } }), [body]);
    // Forgeries: another body under the same headers, or the right body under another secret.
    const forgedBody = rawRequest.content.replace(body.uniqueId, `${body.uniqueId}x`);
    assert.notEqual(forgedBody, rawRequest.content);
    assert.deepEqual(await run(op.perform, { subscribeData, rawRequest: { ...rawRequest, content: forgedBody } }), []);
    const otherSecret = { ...subscribeData, secret: `whsec_${crypto.randomBytes(24).toString('base64')}` };
    assert.deepEqual(await run(op.perform, { subscribeData: otherSecret, rawRequest }), []);
  } else {
    assert.ok(!expectDelivery, 'EXPECT_WEBHOOK_DELIVERY=1 but no webhook delivery arrived within 30 s');
    t.diagnostic('no webhook delivery (no worker running); perform was checked with a polling item');
  }

  const gone = await run(op.performUnsubscribe, { inputData: { handle }, subscribeData });
  assert.deepEqual(gone, { id: subscribeData.id, deleted: true });
  const after = await run(listHooks);
  assert.ok(!after.some((h) => h.id === subscribeData.id), 'unsubscribed');
  // Turning the Zap off again must not fail.
  const again = await run(op.performUnsubscribe, { subscribeData });
  assert.deepEqual(again, { id: subscribeData.id, deleted: false });
});

// --- followed by many ----------------------------------------------------------------------------
const CROWD_KEYS = FIELDS.crowdEvent.map((f) => f.key).sort();

test('Followed by Many: an account two of three handles follow is one item, once; bad input names the field', { skip: SKIP }, async () => {
  const handles = ['fbm1', 'fbm2', 'fbm3'].map(handleFor);
  const seeded = {};
  for (const handle of handles) seeded[handle] = await fake('POST', `handles/${handle}/seed`, { n: 2 });
  const op = App.triggers.followed_by_many.operation;
  // A list field; a mapped value may arrive as a comma-separated string.
  const inputData = { handles: `@${handles[0]}, ${handles[1]},${handles[2]}`, minHandles: '2', withinDays: '7' };
  const first = await run(op.perform, { inputData }); // starts watching the three handles
  assert.deepEqual(first, [], 'what the handles already followed never counts');
  // a baseline account of one handle, followed now by another: one new follow, not a crowd
  await fake('POST', `handles/${handles[1]}/follow`, { account: seeded[handles[0]][0] });
  const shared = await fake('POST', `handles/${handles[0]}/follow`, {});
  await fake('POST', `handles/${handles[2]}/follow`, { account: shared });
  await fake('POST', `handles/${handles[1]}/follow`, {}); // one handle alone
  const next = await run(op.perform, { inputData, meta: { limit: 10 } });
  assert.equal(next.length, 1, JSON.stringify(next));
  const [item] = next;
  assert.deepEqual(Object.keys(item).sort(), CROWD_KEYS);
  assert.equal(item.id, String(shared.user.id));
  assert.equal(item.event, 'followed_by_many');
  assert.deepEqual([...item.followedByHandles].sort(), [handles[0], handles[2]].sort());
  assert.equal(item.followedByCount, 2);
  assert.match(item.eventId, /^[0-9]+$/);
  // Zapier dedupes on eventId: a later poll answers the same event, and a third handle following
  // the account makes no new one (the threshold was crossed once).
  await fake('POST', `handles/${handles[1]}/follow`, { account: shared });
  const again = await run(op.perform, { inputData });
  assert.deepEqual(again.map((i) => i.eventId), [item.eventId]);

  const err = await rejection(run(op.perform, { inputData: { handles: handles.slice(0, 2), minHandles: '3' } }));
  const body = appErrorBody(err);
  assert.equal(body.status, 400);
  assert.match(body.message, /^Minimum Handles: \S/, body.message);
  const one = appErrorBody(await rejection(run(op.perform, { inputData: { handles: [handles[0]] } })));
  assert.match(one.message, /^TikTok Handles \(Watchlist\): \S/, one.message);
});

test('Followed by Many (Instant): subscribe, a real signed delivery, perform, unsubscribe', { skip: SKIP }, async (t) => {
  const op = App.triggers.followed_by_many_instant.operation;
  const handles = ['fbmh1', 'fbmh2'].map(handleFor);
  for (const handle of handles) await fake('POST', `handles/${handle}/seed`, { n: 2 });
  const target = await startTarget();
  t.after(() => target.server.close());
  const inputData = { handles, minHandles: '2', withinDays: '3' };
  const subscribeData = await run(op.performSubscribe, { inputData, targetUrl: target.url });
  assert.equal(subscribeData.event, 'followed_by_many');
  assert.deepEqual(subscribeData.handles, [...handles].sort());
  assert.equal(subscribeData.minHandles, 2);
  assert.match(subscribeData.secret, /^whsec_/);

  const shared = await fake('POST', `handles/${handles[0]}/follow`, {});
  await fake('POST', `handles/${handles[1]}/follow`, { account: shared });
  // performList: the polling route (it also refreshes both handles at once).
  const listed = await run(op.performList, { inputData });
  assert.deepEqual(listed.map((i) => i.id), [String(shared.user.id)]);
  assert.deepEqual(Object.keys(listed[0]).sort(), CROWD_KEYS);

  const expectDelivery = process.env.EXPECT_WEBHOOK_DELIVERY === '1';
  if (await waitFor(() => target.received.length > 0, expectDelivery ? 30 : 2)) {
    assert.equal(target.received.length, 1, 'one delivery for the one crossing');
    const body = JSON.parse(target.received[0].body);
    assert.deepEqual(Object.keys(body).sort(), CROWD_KEYS);
    assert.equal(body.eventId, listed[0].eventId, 'the delivery is the polling item');
    const rawRequest = { method: 'POST', headers: target.received[0].headers, content: target.received[0].body };
    assert.deepEqual(await run(op.perform, { subscribeData, cleanedRequest: body, rawRequest }), [body]);
    const forged = rawRequest.content.replace(body.uniqueId, `${body.uniqueId}x`);
    assert.deepEqual(await run(op.perform, { subscribeData, rawRequest: { ...rawRequest, content: forged } }), []);
  } else {
    assert.ok(!expectDelivery, 'EXPECT_WEBHOOK_DELIVERY=1 but no followed-by-many delivery arrived within 30 s');
    t.diagnostic('no webhook delivery (no worker running); perform was not checked with a real delivery');
  }
  assert.deepEqual(await run(op.performUnsubscribe, { subscribeData }), { id: subscribeData.id, deleted: true });
  const err = await rejection(run(op.performSubscribe, {
    inputData: { handles, minHandles: '3' }, targetUrl: 'http://127.0.0.1:9/never',
  }));
  assert.match(appErrorBody(err).message, /^Minimum Handles: \S/);
});

test('Check Every, the Daily Credit Budget connection field and Get Credit Usage', { skip: SKIP }, async () => {
  const key = `zapier-budget-${RUN}`; // its own ledger
  await fake('POST', 'keys', { key });
  const budgeted = { api_key: key, daily_budget: '2' };
  const handle = handleFor('budget');
  await fake('POST', `handles/${handle}/seed`, { n: 3 });
  const usage = App.searches.credit_usage.operation.perform;

  const [before] = await appTester(usage, { authData: budgeted });
  assert.equal(before.creditsToday, 0);
  assert.equal(before.dailyBudget, 2, 'the connection field travels as X-Daily-Credit-Budget');
  assert.equal(before.days.length, 30);

  const poll = App.triggers.new_following.operation.perform;
  await appTester(poll, { authData: budgeted, inputData: { handle, checkEvery: '30' } }); // baseline: 1 credit
  await fake('POST', `handles/${handle}/follow`, {});
  const inside = await appTester(poll, { authData: budgeted, inputData: { handle, checkEvery: '30' } });
  assert.ok(inside.every((item) => item.sequence === 0), 'inside Check Every: the journal, no new check');

  const search = App.searches.list_following.operation.perform;
  await appTester(search, { authData: budgeted, inputData: { handle } }); // the 2nd and last credit
  const err = await rejection(appTester(search, { authData: budgeted, inputData: { handle } }));
  assert.equal(err.name, 'HaltedError', `${err.name}: ${err.message}`);
  assert.match(err.message, /midnight UTC/);

  const [after] = await appTester(usage, { authData: budgeted });
  assert.equal(after.creditsToday, 2);
  assert.equal(after.budgetLeft, 0);
  const watched = after.watches.find((w) => w.handle === handle);
  assert.equal(watched.checkEvery, 30);
  assert.equal(watched.creditsLast30Days, 1);
});

test('a hook subscription with a wrong key is refused with ExpiredAuthError', { skip: SKIP }, async () => {
  const err = await rejection(
    appTester(App.triggers.new_following_instant.operation.performSubscribe, {
      authData: { api_key: `wrong-${RUN}` },
      inputData: { handle: handleFor('nokey') },
      targetUrl: 'http://127.0.0.1:9/never',
    }),
  );
  assert.equal(err.name, 'ExpiredAuthError', `${err.name}: ${err.message}`);
});
