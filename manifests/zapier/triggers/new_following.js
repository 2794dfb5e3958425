'use strict';

const { apiUrl } = require('../lib/api');
const { inputFields, outputFields } = require('../lib/fields');
const { FOLLOW_EVENT_SAMPLE } = require('../lib/samples');

const KEY = 'new_following';

// The polling route. The first call for a handle answers the accounts it
// already follows (sequence 0) so Zapier's dedupe is seeded and the Zap editor
// has real samples; later calls list new follows first. Items are exactly the
// webhook payload of the instant trigger, so both triggers share this.
const listFollowEvents = async (z, bundle) => {
  const body = { handle: bundle.inputData.handle };
  if (bundle.inputData.checkEvery) body.checkEvery = bundle.inputData.checkEvery;
  const limit = Number(bundle.meta && bundle.meta.limit);
  if (Number.isInteger(limit) && limit > 0) {
    body.limit = Math.min(limit, 300); // TriggerRequestSchema MAX_ITEMS
  }
  const response = await z.request({
    method: 'POST',
    url: apiUrl('triggers/new-following'),
    body,
  });
  if (!Array.isArray(response.data)) {
    throw new z.errors.Error(
      'The TikTok Following service answered something other than a list of follows.',
      'unexpected_response',
      response.status,
    );
  }
  return response.data;
};

module.exports = {
  key: KEY,
  noun: 'Followed Account',
  display: {
    label: 'New Followed Account',
    description: 'Triggers when a TikTok user follows a new account.',
  },
  operation: {
    type: 'polling',
    inputFields: inputFields(KEY),
    perform: listFollowEvents,
    sample: FOLLOW_EVENT_SAMPLE,
    outputFields: outputFields(KEY),
  },
  listFollowEvents,
};
