'use strict';

// The parts of a REST-hook trigger shared by every event kind (new follows, unfollows,
// followed by many).
const { apiUrl, throwApiError } = require('./api');
const { requestBody } = require('./body');
const webhooks = require('./webhooks');

// Subscribes Zapier's target URL for `event` (left to the service's default, new_following, when
// not given). The filters go with the subscription: a filtered account is never delivered (no task).
const makeSubscribe = (key, event) => async (z, bundle) => {
  const body = { ...requestBody(key, bundle.inputData, ['targetUrl', 'event']), targetUrl: bundle.targetUrl };
  if (event) body.event = event;
  const response = await z.request({ method: 'POST', url: apiUrl('hooks'), body });
  // Stored by Zapier as bundle.subscribeData: {id, handle, targetUrl, secret, ...}
  return response.data;
};

const performUnsubscribe = async (z, bundle) => {
  const id = bundle.subscribeData && bundle.subscribeData.id;
  if (!id) {
    throw new z.errors.Error(
      'This Zap has no subscription id to turn off.',
      'missing_subscription_id',
      400,
    );
  }
  const response = await z.request({
    method: 'DELETE',
    url: apiUrl(`hooks/${encodeURIComponent(id)}`),
    skipThrowForStatus: true,
  });
  // Already gone (deleted elsewhere, or the key changed): nothing left to turn off.
  if (response.status === 404) return { id, deleted: false };
  throwApiError(response, z);
  return { id, deleted: true };
};

// Each delivery is ONE event (the shape of a polling item), signed with the
// subscription's secret. Only a delivery whose signature verifies over the raw body counts,
// and only the event's named fields are passed on (never the raw request). A forgery is
// dropped (no Zap run) rather than thrown: errors would let anyone who learns the target URL
// get the user's Zap turned off.
const makePerform = (eventKeys) => async (z, bundle) => {
  const raw = bundle.rawRequest || {};
  const secret = bundle.subscribeData && bundle.subscribeData.secret;
  const check = webhooks.verify({ headers: raw.headers, body: raw.content, secret });
  if (!check.ok) {
    z.console.log(`Ignored a webhook delivery that failed verification: ${check.reason}.`);
    return [];
  }
  let event;
  try {
    event = JSON.parse(raw.content);
  } catch (err) {
    return [];
  }
  if (!event || typeof event !== 'object' || Array.isArray(event)) return [];
  const named = {};
  for (const key of eventKeys) if (key in event) named[key] = event[key];
  return [named];
};

module.exports = { makeSubscribe, performUnsubscribe, makePerform };
