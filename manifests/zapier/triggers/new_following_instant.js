'use strict';

const { apiUrl, throwApiError } = require('../lib/api');
const { inputFields, outputFields } = require('../lib/fields');
const { FOLLOW_EVENT_SAMPLE } = require('../lib/samples');
const { listFollowEvents } = require('./new_following');

const KEY = 'new_following_instant';

const performSubscribe = async (z, bundle) => {
  const response = await z.request({
    method: 'POST',
    url: apiUrl('hooks'),
    body: { handle: bundle.inputData.handle, targetUrl: bundle.targetUrl },
  });
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

// Each webhook delivery is exactly one follow event (the same shape as a
// polling item).
const perform = async (z, bundle) => [bundle.cleanedRequest];

module.exports = {
  key: KEY,
  noun: 'Followed Account',
  display: {
    label: 'New Followed Account (Instant)',
    description:
      'Triggers when a TikTok user follows a new account, delivered instantly by webhook.',
  },
  operation: {
    type: 'hook',
    inputFields: inputFields(KEY),
    performSubscribe,
    performUnsubscribe,
    perform,
    performList: listFollowEvents,
    sample: FOLLOW_EVENT_SAMPLE,
    outputFields: outputFields(KEY),
  },
};
