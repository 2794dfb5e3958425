'use strict';

const { FIELDS, inputFields, outputFields } = require('../lib/fields');
const { CROWD_EVENT_SAMPLE } = require('../lib/samples');
const { makePerform, makeSubscribe, performUnsubscribe } = require('./new_following_instant');
const { listCrowdEvents } = require('./followed_by_many');

const KEY = 'followed_by_many_instant';

const performSubscribe = makeSubscribe(KEY, 'followed_by_many');

module.exports = {
  key: KEY,
  noun: 'Account Followed by Many',
  display: {
    label: 'Followed by Many (Instant)',
    description:
      'Triggers when several handles of your watchlist (at least Minimum Handles) follow the same TikTok account ' +
      'within Within Days, delivered by webhook once per account. Each handle is checked as a new-follows watch, ' +
      '1 DumplingAI credit per handle per check; follows made before a handle was watched never count.',
  },
  operation: {
    type: 'hook',
    inputFields: inputFields(KEY),
    performSubscribe,
    performUnsubscribe,
    // Each delivery is one followed-by-many event, signed; only its named fields are passed on.
    perform: makePerform(FIELDS.crowdEvent.map((f) => f.key)),
    performList: listCrowdEvents,
    sample: CROWD_EVENT_SAMPLE,
    outputFields: outputFields(KEY),
  },
};
