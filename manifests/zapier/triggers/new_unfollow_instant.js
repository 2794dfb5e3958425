'use strict';

const { FIELDS, inputFields, outputFields } = require('../lib/fields');
const { UNFOLLOW_EVENT_SAMPLE } = require('../lib/samples');
const { makePerform, makeSubscribe, performUnsubscribe } = require('./new_following_instant');
const { listUnfollowEvents } = require('./new_unfollow');

const KEY = 'new_unfollow_instant';

const performSubscribe = makeSubscribe(KEY, 'unfollowed');

module.exports = {
  key: KEY,
  noun: 'Unfollowed Account',
  display: {
    label: 'New Unfollow (Instant)',
    description:
      'Triggers when a TikTok user stops following an account, delivered by webhook after each sweep of the following list (at most every "Check for Unfollows Every" hours, default 24): about 1 DumplingAI credit per 100 accounts followed per sweep, plus 1 from the second sweep on.',
  },
  operation: {
    type: 'hook',
    inputFields: inputFields(KEY),
    performSubscribe,
    performUnsubscribe,
    // Each delivery is one unfollow event, signed; only its named fields are passed on.
    perform: makePerform(FIELDS.unfollowEvent.map((f) => f.key)),
    performList: listUnfollowEvents,
    sample: UNFOLLOW_EVENT_SAMPLE,
    outputFields: outputFields(KEY),
  },
};
