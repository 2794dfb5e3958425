'use strict';

// (b) Functional constraints and offline stand-ins for Zapier's publishing
// checks (the real ones run on Zapier's servers at push/promote time).
// Before loading zapier-platform-core: quiets its per-invocation memory log.
process.env.NODE_ENV = process.env.NODE_ENV || 'test';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const zapier = require('zapier-platform-core');
const { App, operations, serialized } = require('./helpers');
const FIELDS = require('../fields.json');
const api = require('../lib/api');

const ROOT = path.resolve(__dirname, '..');
const ops = operations(App);

// --- helpers ---------------------------------------------------------------
const SMALL_WORDS = new Set([
  'a', 'an', 'and', 'as', 'at', 'but', 'by', 'for', 'in', 'nor', 'of', 'on',
  'or', 'per', 'the', 'to', 'vs', 'via', 'with',
]);

const titleCaseProblems = (label) => {
  const problems = [];
  label.split(/\s+/).forEach((word, i) => {
    const letters = word.replace(/^[^A-Za-z0-9]+/, '');
    if (!letters) return;
    if (i > 0 && SMALL_WORDS.has(letters.replace(/[^A-Za-z]+$/, ''))) return;
    if (!/^[A-Z0-9]/.test(letters)) problems.push(word);
  });
  return problems;
};

// Flatten a sample the way Zapier names output keys: nested objects with
// "__", arrays of objects as line items "key[]child".
const sampleKeys = (sample, prefix = '') => {
  const keys = [];
  for (const [key, value] of Object.entries(sample)) {
    if (Array.isArray(value) && value.length && typeof value[0] === 'object') {
      for (const item of value) {
        for (const child of sampleKeys(item, `${prefix}${key}[]`)) {
          if (!keys.includes(child)) keys.push(child);
        }
      }
    } else if (value && typeof value === 'object' && !Array.isArray(value)) {
      keys.push(...sampleKeys(value, `${prefix}${key}__`));
    } else {
      keys.push(`${prefix}${key}`);
    }
  }
  return keys;
};

const sampleValue = (sample, key) => {
  const [head, rest] = key.split('[]');
  if (rest !== undefined) return sample[head].map((item) => item[rest])[0];
  const [parent, child] = key.split('__');
  if (child !== undefined) return sample[parent][child];
  return sample[key];
};

const TYPE_CHECKS = {
  string: (v) => typeof v === 'string',
  datetime: (v) => typeof v === 'string' && !Number.isNaN(Date.parse(v)),
  integer: (v) => v === null || Number.isInteger(v),
  number: (v) => v === null || typeof v === 'number',
  boolean: (v) => typeof v === 'boolean',
};

// --- definition shape ---------------------------------------------------------
test('there are the expected operations', () => {
  assert.deepEqual(
    ops.map(({ type, mapKey }) => `${type}.${mapKey}`).sort(),
    ['searches.check_following', 'searches.credit_usage', 'searches.list_following',
      'triggers.followed_by_many', 'triggers.followed_by_many_instant', 'triggers.new_followed_account',
      'triggers.new_following', 'triggers.new_following_instant', 'triggers.new_unfollow',
      'triggers.new_unfollow_instant'],
  );
  assert.equal(App.triggers.followed_by_many.operation.type, 'polling');
  assert.equal(App.triggers.followed_by_many_instant.operation.type, 'hook');
  assert.equal(App.triggers.new_unfollow.operation.type, 'polling');
  assert.equal(App.triggers.new_unfollow_instant.operation.type, 'hook');
  assert.deepEqual(App.creates, {}, 'reads are searches, not creates');
  assert.equal(App.triggers.new_followed_account.operation.type, 'polling');
  assert.equal(App.triggers.new_following.operation.type, 'polling');
  assert.equal(App.triggers.new_following_instant.operation.type, 'hook');
});

test('operation keys match their map keys', () => {
  for (const { mapKey, op } of ops) assert.equal(op.key, mapKey);
});

test('input field keys are unique per operation, and every input has helpText', () => {
  for (const { mapKey, op } of ops) {
    const keys = op.operation.inputFields.map((f) => f.key);
    assert.equal(new Set(keys).size, keys.length, `${mapKey}: duplicate input keys ${keys}`);
    for (const field of op.operation.inputFields) {
      assert.ok(field.helpText && field.helpText.length >= 20, `${mapKey}.${field.key}: helpText`);
      assert.ok(field.label, `${mapKey}.${field.key}: label`);
    }
  }
});

test('output field keys are unique per operation, and every output field has a label', () => {
  for (const { mapKey, op } of ops) {
    const keys = op.operation.outputFields.map((f) => f.key);
    assert.equal(new Set(keys).size, keys.length, `${mapKey}: duplicate output keys`);
    for (const field of op.operation.outputFields) {
      assert.ok(field.label, `${mapKey}.${field.key}: label`);
      assert.ok(field.type, `${mapKey}.${field.key}: type`);
    }
  }
});

test('labels are Title Case and at most 64 characters', () => {
  const labels = [];
  for (const { mapKey, op } of ops) {
    labels.push([`${mapKey}.display.label`, op.display.label]);
    labels.push([`${mapKey}.noun`, op.noun]);
    for (const f of op.operation.inputFields) labels.push([`${mapKey}.input.${f.key}`, f.label]);
    for (const f of op.operation.outputFields) labels.push([`${mapKey}.output.${f.key}`, f.label]);
  }
  for (const f of App.authentication.fields) labels.push([`auth.${f.key}`, f.label]);
  for (const [where, label] of labels) {
    assert.ok(typeof label === 'string' && label.length >= 2 && label.length <= 64, `${where}: ${label}`);
    assert.deepEqual(titleCaseProblems(label), [], `${where}: "${label}" is not Title Case`);
  }
});

test('title-case check is not vacuous', () => {
  assert.deepEqual(titleCaseProblems('List Accounts a User Follows'), []);
  assert.deepEqual(titleCaseProblems('New followed account'), ['followed', 'account']);
});

test('trigger descriptions start "Triggers when"; all descriptions are sentences', () => {
  for (const { type, mapKey, op } of ops) {
    const description = op.display.description;
    if (type === 'triggers') {
      assert.match(description, /^Triggers when /, mapKey);
    }
    if (type === 'searches') {
      // "Get Credit Usage" is the name the issue gives it (it reads a report, it finds nothing).
      assert.match(op.display.label, mapKey === 'credit_usage' ? /^Get / : /^Find /, mapKey);
      assert.match(description, /^Finds /, mapKey);
    }
    assert.match(description, /\.$/, `${mapKey}: description should end with a period`);
    assert.ok(!description.includes(op.display.label), `${mapKey}: description repeats the label`);
  }
});

test('samples are present and carry an id', () => {
  for (const { type, mapKey, op } of ops) {
    const sample = op.operation.sample;
    assert.ok(sample && Object.keys(sample).length, `${mapKey}: sample`);
    if (type === 'triggers') {
      // Zapier dedupes trigger items by id.
      assert.equal(typeof sample.id, 'string', `${mapKey}: sample.id`);
      assert.ok(sample.id.length > 0);
    } else if (mapKey === 'check_following') {
      // One answer; the account found carries its id.
      assert.equal(typeof sample.follows, 'boolean', mapKey);
      assert.equal(typeof sample.account.id, 'string', `${mapKey}: account.id`);
    } else if (mapKey === 'credit_usage') {
      // One report: its line items are the days and the watched handles.
      assert.ok(Array.isArray(sample.days) && sample.days.length, mapKey);
      assert.ok(Array.isArray(sample.watches) && sample.watches.length, mapKey);
    } else {
      // The search answers one object describing a list: every line item has its id.
      assert.ok(Array.isArray(sample.following) && sample.following.length, mapKey);
      for (const item of sample.following) assert.equal(typeof item.id, 'string', `${mapKey}: following[].id`);
    }
  }
});

test('sample keys are exactly the outputFields keys, with matching value types', () => {
  for (const { mapKey, op } of ops) {
    const outputKeys = op.operation.outputFields.map((f) => f.key);
    const keys = sampleKeys(op.operation.sample);
    const extra = keys.filter((k) => !outputKeys.includes(k));
    const missing = outputKeys.filter((k) => !keys.includes(k));
    assert.deepEqual(extra, [], `${mapKey}: sample keys without an outputField`);
    assert.deepEqual(missing, [], `${mapKey}: outputFields missing from the sample`);
    for (const field of op.operation.outputFields) {
      const value = sampleValue(op.operation.sample, field.key);
      // `list: true`: an array of values of the type (never empty in a sample, so the check bites)
      const values = field.list ? value : [value];
      assert.ok(Array.isArray(values) && values.length, `${mapKey}.${field.key}: list ${field.list}, ${JSON.stringify(value)}`);
      for (const v of values) {
        assert.ok(TYPE_CHECKS[field.type](v), `${mapKey}.${field.key}: ${JSON.stringify(v)} is not ${field.type}`);
      }
    }
  }
});

test('both triggers output the same follow-event fields and share the sample', () => {
  const poll = App.triggers.new_followed_account.operation;
  const hook = App.triggers.new_following_instant.operation;
  const withoutPrimary = (fields) => fields.map(({ primary, ...rest }) => rest);
  assert.deepEqual(withoutPrimary(hook.outputFields), withoutPrimary(poll.outputFields));
  assert.deepEqual(hook.sample, poll.sample);
  assert.equal(hook.performList, poll.perform, 'performList is the polling route');
});

// A polling trigger and its REST-hook twin: the same event fields and sample, the polling one
// deduplicated on eventId, the hook's samples from the polling route.
const assertEventPair = (poll, hook, event) => {
  const withoutPrimary = (fields) => fields.map(({ primary, ...rest }) => rest);
  assert.deepEqual(withoutPrimary(hook.outputFields), withoutPrimary(poll.outputFields));
  assert.deepEqual(poll.outputFields.filter((f) => f.primary).map((f) => f.key), ['eventId']);
  assert.deepEqual(hook.outputFields.filter((f) => f.primary), [], 'a hook item is one delivery');
  assert.deepEqual(hook.sample, poll.sample);
  assert.equal(hook.performList, poll.perform, 'performList is the polling route');
  assert.equal(poll.sample.event, event);
};

test('both unfollow triggers output the unfollow-event fields; the polling one dedupes on eventId', () => {
  const poll = App.triggers.new_unfollow.operation;
  const hook = App.triggers.new_unfollow_instant.operation;
  assertEventPair(poll, hook, 'unfollowed');
  for (const op of [poll, hook]) {
    const sweep = op.inputFields.find((f) => f.key === 'sweepEvery');
    assert.match(sweep.helpText, /credit/, 'the help says what a sweep costs');
  }
  assert.match(App.triggers.new_unfollow.display.description, /credit/);
});

test('both followed-by-many triggers: the event fields, a list of handles, eventId dedupe, the cost said', () => {
  const poll = App.triggers.followed_by_many.operation;
  const hook = App.triggers.followed_by_many_instant.operation;
  assertEventPair(poll, hook, 'followed_by_many');
  const handlesOut = poll.outputFields.find((f) => f.key === 'followedByHandles');
  assert.deepEqual([handlesOut.type, handlesOut.list], ['string', true]);
  assert.equal(poll.sample.followedByCount, poll.sample.followedByHandles.length);
  for (const [key, op] of [['followed_by_many', poll], ['followed_by_many_instant', hook]]) {
    const inputs = Object.fromEntries(op.inputFields.map((f) => [f.key, f]));
    assert.ok(!inputs.handle, `${key}: a watchlist only`);
    assert.equal(inputs.handles.required, true, key);
    assert.equal(inputs.handles.list, true, key);
    assert.match(inputs.handles.helpText, /1 DumplingAI credit per handle per check/, key);
    assert.match(inputs.handles.helpText, /for free/, key);
    assert.match(inputs.handles.helpText, /baseline/, key);
    assert.deepEqual([inputs.minHandles.default, inputs.withinDays.default], ['2', '7'], key);
    assert.match(App.triggers[key].display.description, /credit per handle per check/, key);
    assert.match(App.triggers[key].display.description, /before a handle was watched never count/, key);
  }
  assert.equal(hook.inputFields.find((f) => f.key === 'checkEvery').default, 'auto');
});

test('the polling trigger dedupes on eventId; the hidden legacy trigger keeps the account id', () => {
  const primary = (op) => op.operation.outputFields.filter((f) => f.primary).map((f) => f.key);
  assert.deepEqual(primary(App.triggers.new_followed_account), ['eventId']);
  assert.deepEqual(primary(App.triggers.new_following), [], 'legacy Zaps keep deduping on id');
  assert.equal(App.triggers.new_following.display.hidden, true);
  assert.ok(!App.triggers.new_followed_account.display.hidden);
  // the filters are inputs of every new operation that lists accounts
  const FILTERS = ['verifiedOnly', 'excludePrivate', 'minFollowers', 'maxFollowers', 'keywords'];
  for (const op of [App.triggers.new_followed_account, App.triggers.new_following_instant, App.searches.list_following]) {
    const keys = op.operation.inputFields.map((f) => f.key);
    for (const key of FILTERS) assert.ok(keys.includes(key), `${op.key}: ${key}`);
  }
  const keywords = App.triggers.new_followed_account.operation.inputFields.find((f) => f.key === 'keywords');
  assert.equal(keywords.list, true);
});

test('fields in the definition are exactly fields.json (generated from the schemas)', () => {
  const definition = serialized();
  for (const [key, spec] of Object.entries(FIELDS.operations)) {
    const type = { create: 'creates', search: 'searches', trigger: 'triggers' }[spec.type];
    const op = definition[type][key];
    assert.ok(op, `${type}.${key} missing`);
    assert.deepEqual(op.operation.inputFields, spec.inputFields, `${key} inputFields`);
    assert.deepEqual(op.operation.outputFields, spec.outputFields, `${key} outputFields`);
  }
});

// --- authentication -----------------------------------------------------------
test('authentication: custom, one required password api_key with a link to the keys page, an optional budget', () => {
  const auth = App.authentication;
  assert.equal(auth.type, 'custom');
  assert.equal(auth.fields.length, 2);
  const [field, budget] = auth.fields;
  assert.equal(budget.key, 'daily_budget');
  assert.equal(budget.type, 'integer');
  assert.equal(budget.required, false);
  assert.equal(field.key, 'api_key');
  assert.equal(field.type, 'password');
  assert.equal(field.required, true);
  assert.match(field.helpText, /\[[^\]]+\]\(https:\/\/app\.dumplingai\.com\/api-keys\)/);
  assert.equal(typeof auth.test, 'function');
});

test('connection label is present and never contains the key', () => {
  const { connectionLabel } = App.authentication;
  assert.ok(connectionLabel, 'connectionLabel');
  const key = 'sk-live-0123456789abcdef';
  const z = {};
  const label = connectionLabel(z, { authData: { api_key: key }, inputData: { ok: true, label: 'key …cdef' } });
  assert.equal(label, 'key …cdef');
  const leaky = connectionLabel(z, { authData: { api_key: key }, inputData: { label: `key ${key}` } });
  assert.ok(leaky && !leaky.includes(key), leaky);
  assert.ok(connectionLabel(z, { authData: { api_key: key }, inputData: {} }));
  // Zapier shows the app's name beside the label: it must not repeat it.
  for (const l of [label, leaky]) assert.doesNotMatch(l, /dumpling|tiktok/i, l);
});

// --- one base URL ---------------------------------------------------------------
test('every URL is built from API_BASE_URL (no other URL literal in the code)', () => {
  const allowed = {
    'lib/api.js': ['https://tiktok-following.example.com'], // the documented default
    'authentication.js': ['https://app.dumplingai.com/api-keys'], // help link
  };
  const files = ['index.js', 'authentication.js', 'lib', 'triggers', 'creates', 'searches']
    .map((p) => path.join(ROOT, p))
    .filter((p) => fs.existsSync(p))
    .flatMap((p) => (fs.statSync(p).isDirectory() ? fs.readdirSync(p).map((f) => path.join(p, f)) : [p]))
    .filter((p) => p.endsWith('.js') && !p.endsWith('samples.js'));
  for (const file of files) {
    const rel = path.relative(ROOT, file);
    const urls = fs.readFileSync(file, 'utf8').match(/https?:\/\/[^\s'"`)]+/g) || [];
    const stray = urls.filter((u) => !(allowed[rel] || []).includes(u) && !u.startsWith('https://your-service'));
    assert.deepEqual(stray, [], `${rel} hard-codes a URL`);
  }
});

test('apiUrl follows API_BASE_URL, with a placeholder default', (t) => {
  const saved = process.env.API_BASE_URL;
  t.after(() => {
    if (saved === undefined) delete process.env.API_BASE_URL;
    else process.env.API_BASE_URL = saved;
  });
  delete process.env.API_BASE_URL;
  assert.equal(api.apiUrl('auth/test'), 'https://tiktok-following.example.com/v1/zapier/auth/test');
  process.env.API_BASE_URL = 'http://127.0.0.1:5000/';
  assert.equal(api.apiUrl('/hooks/abc'), 'http://127.0.0.1:5000/v1/zapier/hooks/abc');
});

// --- middleware (offline) -------------------------------------------------------
test('beforeRequest adds the Bearer header', () => {
  const request = api.addBearerHeader({ url: 'x', headers: {} }, {}, { authData: { api_key: 'k-1' } });
  assert.equal(request.headers.Authorization, 'Bearer k-1');
});

const fakeResponse = (status, body, headers = {}) => ({
  status,
  data: body,
  skipThrowForStatus: false,
  getHeader: (name) => headers[name.toLowerCase()] ?? null,
});

const thrown = (fn) => {
  try {
    fn();
  } catch (err) {
    return err;
  }
  assert.fail('expected a throw');
};

test('afterResponse maps the service errors to Zapier error types', () => {
  const z = { errors: zapier.errors };
  assert.equal(api.handleErrors(fakeResponse(200, {}), z).status, 200);

  let err = thrown(() => api.handleErrors(fakeResponse(401, { error: 'Bad key, reconnect.', code: 'invalid_api_key' }), z));
  assert.equal(err.name, 'ExpiredAuthError');
  assert.equal(err.message, 'Bad key, reconnect.');

  err = thrown(() => api.handleErrors(fakeResponse(402, { error: 'No credits left.', code: 'no_credits' }), z));
  assert.equal(err.name, 'HaltedError');
  assert.equal(err.message, 'No credits left.');
  // Without the service's sentence: HaltedError stops this run; it never turns the Zap off.
  err = thrown(() => api.handleErrors(fakeResponse(402, undefined), z));
  assert.equal(err.name, 'HaltedError');
  assert.doesNotMatch(err.message, /turn the Zap|Zap back on|paused/i, err.message);

  // A 400 names each field with the label the user sees, not "see 'fields'".
  err = thrown(() => api.handleErrors(fakeResponse(400, {
    error: "Some fields are missing or invalid; see 'fields'.", code: 'invalid_request',
    fields: { handle: ['Use a profile link like https://www.tiktok.com/@name.'], minTime: ['Must be at least 0.'] },
  }), z));
  assert.equal(err.name, 'AppError');
  assert.deepEqual(JSON.parse(err.message), {
    message: 'TikTok Handle: Use a profile link like https://www.tiktok.com/@name. Start After Cursor: Must be at least 0.',
    code: 'invalid_request', status: 400,
  });
  assert.equal(api.errorMessage(400, { fields: { someField: ['Bad.'] } }), 'Some field: Bad.');

  err = thrown(() => api.handleErrors(fakeResponse(429, { error: 'Slow down.', code: 'rate_limited' }, { 'retry-after': '17' }), z));
  assert.equal(err.name, 'ThrottledError');
  assert.deepEqual(JSON.parse(err.message), { message: 'Slow down.', delay: 17 });

  for (const status of [400, 404, 502, 504]) {
    err = thrown(() => api.handleErrors(fakeResponse(status, { error: `Sentence ${status}.`, code: `c_${status}` }), z));
    assert.equal(err.name, 'AppError');
    assert.deepEqual(JSON.parse(err.message), { message: `Sentence ${status}.`, code: `c_${status}`, status });
  }

  // Not our JSON (e.g. a proxy's HTML page): still a sentence, never a crash.
  err = thrown(() => api.handleErrors(fakeResponse(503, undefined), z));
  assert.equal(err.name, 'AppError');
  assert.match(JSON.parse(err.message).message, /HTTP 503/);

  // A request that handles its own statuses passes through.
  const own = { ...fakeResponse(404, {}), skipThrowForStatus: true };
  assert.equal(api.handleErrors(own, z), own);
});

test('Retry-After parsing', () => {
  assert.equal(api.parseRetryAfter('30'), 30);
  assert.equal(api.parseRetryAfter(null), null);
  assert.equal(api.parseRetryAfter('soon'), null);
  const inTen = new Date(Date.now() + 10_000).toUTCString();
  assert.ok(api.parseRetryAfter(inTen) <= 10 && api.parseRetryAfter(inTen) >= 8);
});

test('429 reaches our middleware (throwForThrottlingEarly is off)', () => {
  assert.equal(App.flags.throwForThrottlingEarly, false);
});

// --- the request bodies are exactly fields.json's requestKeys ---------------------
test('each operation sends exactly its requestKeys (checked against the schemas by the drift test)', async () => {
  const sent = [];
  const z = {
    errors: zapier.errors,
    request: async (request) => {
      sent.push(request);
      return { status: 200, data: request.url.endsWith('/hooks') ? { id: 'sub_1' } : [] };
    },
  };
  const all = {
    handle: '@someone', handles: ['@a', 'b'], count: '10', minTime: 1700000000, limit: 50, target: '@other', checkEvery: '15',
    verifiedOnly: 'true', excludePrivate: false, minFollowers: '10', maxFollowers: 5000, keywords: ['food', ' '],
  };
  const cases = [
    ['list_following', App.searches.list_following.operation.perform, { inputData: all }],
    ['check_following', App.searches.check_following.operation.perform, { inputData: all }],
    ['new_followed_account', App.triggers.new_followed_account.operation.perform, { inputData: all, meta: { limit: 5 } }],
    ['new_following_instant', App.triggers.new_following_instant.operation.performSubscribe, {
      inputData: all, targetUrl: 'https://hooks.zapier.com/hooks/standard/1/abc/',
    }],
    ['new_unfollow', App.triggers.new_unfollow.operation.perform, {
      inputData: { ...all, sweepEvery: '12' }, meta: { limit: 5 } }],
    ['new_unfollow_instant', App.triggers.new_unfollow_instant.operation.performSubscribe, {
      inputData: { ...all, sweepEvery: 12 }, targetUrl: 'https://hooks.zapier.com/hooks/standard/1/abc/',
    }],
    ['followed_by_many', App.triggers.followed_by_many.operation.perform, {
      inputData: { ...all, minHandles: '3', withinDays: '14' }, meta: { limit: 5 } }],
    ['followed_by_many_instant', App.triggers.followed_by_many_instant.operation.performSubscribe, {
      inputData: { ...all, minHandles: 3, withinDays: '14' }, targetUrl: 'https://hooks.zapier.com/hooks/standard/1/abc/',
    }],
  ];
  for (const [key, fn, bundle] of cases) {
    sent.length = 0;
    await fn(z, { authData: { api_key: 'k' }, ...bundle });
    assert.equal(sent.length, 1, key);
    assert.equal(sent[0].method, 'POST', key);
    assert.deepEqual(Object.keys(sent[0].body).sort(), [...FIELDS.operations[key].requestKeys].sort(), key);
  }
  // the connection's budget travels as a header; none without one
  sent.length = 0;
  const withBudget = App.beforeRequest[0]({ headers: {} }, z, { authData: { api_key: 'k', daily_budget: 25 } });
  assert.equal(withBudget.headers['X-Daily-Credit-Budget'], '25');
  const noBudget = App.beforeRequest[0]({ headers: {} }, z, { authData: { api_key: 'k', daily_budget: '' } });
  assert.ok(!('X-Daily-Credit-Budget' in noBudget.headers));
  // followed by many: the thresholds as integers, the event named, the watchlist as a list
  sent.length = 0;
  await App.triggers.followed_by_many_instant.operation.performSubscribe(z, {
    inputData: { handles: 'a, @b', minHandles: '2', withinDays: '30' }, targetUrl: 'https://hooks.zapier.com/x/',
  });
  assert.equal(sent[0].url.endsWith('/v1/zapier/hooks'), true);
  assert.deepEqual(sent[0].body, {
    handles: ['a', '@b'], minHandles: 2, withinDays: 30, targetUrl: 'https://hooks.zapier.com/x/', event: 'followed_by_many',
  });
  sent.length = 0;
  await App.triggers.followed_by_many.operation.perform(z, { inputData: { handles: ['a', 'b'] }, meta: { limit: 900 } });
  assert.equal(sent[0].url.endsWith('/v1/zapier/triggers/followed-by-many'), true);
  assert.deepEqual(sent[0].body, { handles: ['a', 'b'], limit: 300 });
  // the instant trigger's Check Every defaults to "auto" in the Zap editor
  const instantCheck = App.triggers.new_following_instant.operation.inputFields.find((f) => f.key === 'checkEvery');
  assert.equal(instantCheck.default, 'auto');
  // integers are sent as integers, booleans as booleans, lists without empty entries
  sent.length = 0;
  await App.searches.list_following.operation.perform(z, { inputData: all });
  assert.deepEqual(sent[0].body, {
    handle: '@someone', count: 10, minTime: 1700000000, limit: 50,
    verifiedOnly: true, excludePrivate: false, minFollowers: 10, maxFollowers: 5000, keywords: ['food'],
  });
  // the legacy trigger sends only what it always sent
  sent.length = 0;
  await App.triggers.new_following.operation.perform(z, { inputData: { handle: 'x1' }, meta: { limit: 5 } });
  assert.deepEqual(sent[0].body, { handle: 'x1', limit: 5 });
  // empty optional inputs are left out
  sent.length = 0;
  await App.searches.list_following.operation.perform(z, { inputData: { handle: 'x1', count: '', limit: null } });
  assert.deepEqual(sent[0].body, { handle: 'x1' });
});

// --- webhook verification (offline; the live delivery is checked in integration.test.js) ---
const crypto = require('node:crypto');
const webhooks = require('../lib/webhooks');

const SECRET = `whsec_${Buffer.from('0123456789abcdef01234567').toString('base64')}`;
const NOW = 1764079200;
const signed = (body, { id = 'msg_1', timestamp = NOW, secret = SECRET, prefix = '' } = {}) => {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const sig = crypto.createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64');
  return {
    [`${prefix}Webhook-Id`]: id,
    [`${prefix}Webhook-Timestamp`]: String(timestamp),
    [`${prefix}Webhook-Signature`]: `v1,${sig}`,
  };
};

test('webhook signatures: a real signature passes, every forgery fails', () => {
  const body = JSON.stringify({ id: '1', uniqueId: 'a' });
  const ok = (headers, b = body, secret = SECRET, now = NOW) => webhooks.verify({ headers, body: b, secret, now }).ok;
  assert.equal(ok(signed(body)), true);
  assert.equal(ok(signed(body, { prefix: 'Http-' })), true, 'Zapier may prefix raw headers with Http-');
  const two = signed(body);
  two['Webhook-Signature'] = `v1,AAAA ${two['Webhook-Signature']}`;
  assert.equal(ok(two), true, 'one of several signatures is enough');
  assert.equal(ok(signed(body), body.replace('"a"', '"b"')), false, 'tampered body');
  assert.equal(ok(signed(body, { secret: `whsec_${Buffer.from('another-secret-24-bytes!').toString('base64')}` })), false, 'wrong secret');
  assert.equal(ok(signed(body, { timestamp: NOW - 301 })), false, 'too old: a replay');
  assert.equal(ok(signed(body, { timestamp: NOW + 301 })), false, 'from the future');
  assert.equal(ok(signed(body, { timestamp: NOW - 299 })), true, 'inside the tolerance');
  const swapped = signed(body);
  swapped['Webhook-Id'] = 'msg_2';
  assert.equal(ok(swapped), false, 'the id is signed');
  assert.equal(ok({}), false, 'unsigned');
  assert.equal(ok(signed(body), body, null), false, 'no secret stored');
  const v2 = signed(body);
  v2['Webhook-Signature'] = v2['Webhook-Signature'].replace('v1,', 'v2,');
  assert.equal(ok(v2), false, 'unknown version');
});

test('hook perform: named event fields from a verified delivery; a forgery is dropped', async () => {
  const { perform } = App.triggers.new_following_instant.operation;
  const logs = [];
  const z = { console: { log: (m) => logs.push(m) } };
  const event = { ...App.triggers.new_following_instant.operation.sample, injected: '<script>' };
  const content = JSON.stringify(event);
  const headers = signed(content, { timestamp: Math.floor(Date.now() / 1000) });
  const subscribeData = { id: 'sub_1', secret: SECRET };
  const out = await perform(z, { subscribeData, rawRequest: { headers, content }, cleanedRequest: event });
  assert.equal(out.length, 1);
  assert.deepEqual(Object.keys(out[0]).sort(), FIELDS.followEvent.map((f) => f.key).sort(), 'named fields only');
  const forged = await perform(z, {
    subscribeData, rawRequest: { headers, content: content.replace('dumpling.kitchen', 'evil') }, cleanedRequest: event,
  });
  assert.deepEqual(forged, []);
  assert.deepEqual(await perform(z, { subscribeData, cleanedRequest: event }), [], 'no raw request: nothing to verify');
  assert.ok(logs.every((m) => !m.includes(SECRET)));
});
