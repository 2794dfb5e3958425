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
  402: 'Your DumplingAI account has no credits left. Add credits, then turn the Zap back on.',
  429: 'DumplingAI is rate limiting requests. Zapier will retry later.',
};

// Turn one of the service's JSON errors {"error", "code"} into the Zapier error
// type that makes Zapier do the right thing, always keeping our sentence.
const throwApiError = (response, z) => {
  if (response.status < 400) return response;

  const body =
    response.data && typeof response.data === 'object' ? response.data : {};
  const code = typeof body.code === 'string' && body.code ? body.code : `http_${response.status}`;
  const message =
    (typeof body.error === 'string' && body.error) ||
    DEFAULT_MESSAGES[response.status] ||
    `The TikTok Following service answered HTTP ${response.status}.`;

  if (response.status === 401) {
    // Custom auth cannot be refreshed: ask the user to reconnect.
    throw new z.errors.ExpiredAuthError(message);
  }
  if (response.status === 402) {
    // Out of credits: retrying will not help until the user acts; pause the Zap.
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
  parseRetryAfter,
};
