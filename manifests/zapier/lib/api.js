'use strict';

// ONE base-URL setting for every request this app makes.
//
// API_BASE_URL is the public URL of OUR service (not DumplingAI itself). On
// Zapier it is set per app version with
//     zapier-platform env:set <version> API_BASE_URL=https://your-service
// and locally / in tests with an ordinary environment variable. The default is
// a placeholder production URL.
const DEFAULT_API_BASE_URL = 'https://tiktok-following.example.com';

const baseUrl = () =>
  (process.env.API_BASE_URL || DEFAULT_API_BASE_URL).replace(/\/+$/, '');

// Every route of the service for Zapier lives under /v1/zapier/.
const apiUrl = (path) => `${baseUrl()}/v1/zapier/${path.replace(/^\/+/, '')}`;

// beforeRequest: the user's DumplingAI key as a Bearer token.
const addBearerHeader = (request, z, bundle) => {
  const key = bundle.authData && bundle.authData.api_key;
  request.headers = request.headers || {};
  if (key) {
    request.headers.Authorization = `Bearer ${key}`;
  }
  // The connection's optional daily budget (CONTRACT.md, "Cost controls").
  const budget = bundle.authData && bundle.authData.daily_budget;
  if (budget !== undefined && budget !== null && String(budget).trim() !== '') {
    request.headers['X-Daily-Credit-Budget'] = String(budget).trim();
  }
  request.headers.Accept = request.headers.Accept || 'application/json';
  return request;
};

const parseRetryAfter = (value) => {
  if (value === null || value === undefined || value === '') return null;
  const seconds = Number.parseInt(String(value).trim(), 10);
  if (!Number.isNaN(seconds)) return Math.max(seconds, 0);
  const when = Date.parse(value); // HTTP-date form
  if (!Number.isNaN(when)) {
    return Math.max(Math.ceil((when - Date.now()) / 1000), 0);
  }
  return null;
};

const DEFAULT_MESSAGES = {
  401: 'Your DumplingAI API key was not accepted. Reconnect your account with a valid key.',
  402: 'Your DumplingAI account has no credits left. This run stopped; add credits and later runs go through.',
  429: 'DumplingAI is rate limiting requests. Zapier will retry later.',
};

// The label a Zap user sees for a request key (the input fields' labels), else the key itself
// spelled as words ("minTime" -> "Min time").
const FIELD_LABELS = (() => {
  const labels = {};
  for (const op of Object.values(require('../fields.json').operations)) {
    for (const field of op.inputFields) labels[field.key] = field.label;
  }
  return labels;
})();

const fieldLabel = (key) => {
  if (FIELD_LABELS[key]) return FIELD_LABELS[key];
  const words = String(key).replace(/([a-z0-9])([A-Z])/g, '$1 $2').replace(/[_-]+/g, ' ').toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
};

// marshmallow's messages: {field: [sentence, ...]} (nested schemas nest the same way).
const fieldSentences = (fields, prefix = '') => {
  const out = [];
  for (const [key, value] of Object.entries(fields || {})) {
    const name = prefix ? `${prefix} ${fieldLabel(key)}` : fieldLabel(key);
    if (Array.isArray(value)) out.push(`${name}: ${value.map(String).join(' ')}`);
    else if (value && typeof value === 'object') out.push(...fieldSentences(value, name));
    else if (value !== undefined && value !== null) out.push(`${name}: ${value}`);
  }
  return out;
};

// A 400 from the service carries each field's message in `fields`: show those (with the
// field's label) instead of the general "see 'fields'" sentence the user cannot open.
const errorMessage = (status, body) => {
  const perField = body.fields && typeof body.fields === 'object' ? fieldSentences(body.fields) : [];
  if (perField.length) return perField.join(' ');
  return (
    (typeof body.error === 'string' && body.error) ||
    DEFAULT_MESSAGES[status] ||
    `The TikTok Following service answered HTTP ${status}.`
  );
};

// Turn one of the service's JSON errors {"error", "code"} into the Zapier error
// type that makes Zapier do the right thing, always keeping our sentence.
const throwApiError = (response, z) => {
  if (response.status < 400) return response;

  const body =
    response.data && typeof response.data === 'object' ? response.data : {};
  const code = typeof body.code === 'string' && body.code ? body.code : `http_${response.status}`;
  const message = errorMessage(response.status, body);

  if (response.status === 401) {
    // Custom auth cannot be refreshed: ask the user to reconnect.
    throw new z.errors.ExpiredAuthError(message);
  }
  if (response.status === 402) {
    // Out of credits: HaltedError stops THIS run (shown as halted, not as an error) and never
    // turns the Zap off, so later runs go through once the account has credits again.
    throw new z.errors.HaltedError(message);
  }
  if (response.status === 429) {
    const delay = parseRetryAfter(response.getHeader('retry-after'));
    throw new z.errors.ThrottledError(message, delay === null ? undefined : delay);
  }
  throw new z.errors.Error(message, code, response.status);
};

// afterResponse middleware. A request made with `skipThrowForStatus: true`
// handles its own statuses (and may call throwApiError itself).
// The app sets flags.throwForThrottlingEarly = false so that 429 answers reach
// this middleware and keep the service's sentence and Retry-After.
const handleErrors = (response, z) => {
  if (response.skipThrowForStatus) return response;
  return throwApiError(response, z);
};

module.exports = {
  DEFAULT_API_BASE_URL,
  baseUrl,
  apiUrl,
  addBearerHeader,
  handleErrors,
  throwApiError,
  errorMessage,
  parseRetryAfter,
};
