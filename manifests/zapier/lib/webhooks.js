'use strict';

// Standard Webhooks (v1) verification of a delivery from our service: the signature is
// base64(HMAC-SHA256(key, `${webhook-id}.${webhook-timestamp}.${raw body}`)) where key is the
// base64 part of the subscription's `whsec_` secret (stored by Zapier as bundle.subscribeData).
const crypto = require('node:crypto');

const SECRET_PREFIX = 'whsec_';
const TOLERANCE_SECONDS = 5 * 60; // the Standard Webhooks default: older or future-dated is a replay

// Headers as Zapier hands them to a hook: names in any case, and possibly prefixed "Http-".
const header = (headers, name) => {
  const wanted = new Set([name, `http-${name}`]);
  for (const [key, value] of Object.entries(headers || {})) {
    if (wanted.has(key.toLowerCase())) return Array.isArray(value) ? value[0] : value;
  }
  return undefined;
};

const sign = (secret, id, timestamp, body) => {
  const key = Buffer.from(secret.slice(SECRET_PREFIX.length), 'base64');
  return crypto.createHmac('sha256', key).update(`${id}.${timestamp}.${body}`, 'utf8').digest();
};

// {ok: true} or {ok: false, reason}. `now` is in seconds (tests pass a fixed one).
const verify = ({ headers, body, secret, now = Date.now() / 1000 }) => {
  if (typeof secret !== 'string' || !secret.startsWith(SECRET_PREFIX)) return { ok: false, reason: 'no signing secret' };
  const id = header(headers, 'webhook-id');
  const timestamp = header(headers, 'webhook-timestamp');
  const signatures = header(headers, 'webhook-signature');
  if (!id || !timestamp || !signatures || typeof body !== 'string') return { ok: false, reason: 'unsigned' };
  if (!/^\d{1,12}$/.test(timestamp) || Math.abs(now - Number(timestamp)) > TOLERANCE_SECONDS) {
    return { ok: false, reason: 'timestamp outside tolerance' };
  }
  const expected = sign(secret, id, timestamp, body);
  // The header may list several "v1,<base64>" (e.g. during a secret rotation): one match is enough.
  for (const entry of String(signatures).split(' ')) {
    const [version, value] = entry.split(',', 2);
    if (version !== 'v1' || !value) continue;
    const given = Buffer.from(value, 'base64');
    if (given.length === expected.length && crypto.timingSafeEqual(given, expected)) return { ok: true };
  }
  return { ok: false, reason: 'signature mismatch' };
};

module.exports = { verify, sign, header, TOLERANCE_SECONDS };
