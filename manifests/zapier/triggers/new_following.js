'use strict';

const { inputFields, outputFields } = require('../lib/fields');
const { pollEvents } = require('../lib/poll');
const { FOLLOW_EVENT_SAMPLE } = require('../lib/samples');

// The polling route. The first call for a handle answers the accounts it already follows
// (sequence 0) so Zapier's dedupe is seeded and the Zap editor has real samples; later calls
// list new follows first. Items are exactly the webhook payload of the instant trigger, so
// both triggers share this. The filters (inputs of new_followed_account and of the instant
// trigger) are applied by the service: a filtered account is never an item.
const listFollowEvents = pollEvents('new_followed_account', 'triggers/new-following', 'follows');

const trigger = (key, extra = {}) => ({
  key,
  noun: 'Followed Account',
  display: {
    label: 'New Followed Account',
    description:
      'Triggers when a TikTok user follows a new account. Usually 1 DumplingAI credit per check (more after a burst of follows); filtered accounts cost no task.',
    ...extra,
  },
  operation: {
    type: 'polling',
    inputFields: inputFields(key),
    perform: listFollowEvents,
    sample: FOLLOW_EVENT_SAMPLE,
    outputFields: outputFields(key),
  },
});

// Deduplicated on eventId (its outputField is `primary`): the same account followed again
// later, or followed by two watched handles, is a new item.
const newFollowedAccount = trigger('new_followed_account');

// The trigger as it was before eventId, deduplicated on the account id. Hidden: existing Zaps
// keep it (Zapier's dedupe store of each Zap holds account ids, so moving them to eventId would
// fire every follow they already saw once more); new Zaps get new_followed_account.
const newFollowingLegacy = trigger('new_following', { hidden: true });

module.exports = { newFollowedAccount, newFollowingLegacy, listFollowEvents };
