'use strict';

const { FIELDS, inputFields, outputFields } = require('../lib/fields');
const { makePerform, makeSubscribe, performUnsubscribe } = require('../lib/hooks');
const { FOLLOW_EVENT_SAMPLE } = require('../lib/samples');
const { listFollowEvents } = require('./new_following');

const KEY = 'new_following_instant';

const performSubscribe = makeSubscribe(KEY); // the service's default event: new_following
const perform = makePerform(FIELDS.followEvent.map((f) => f.key));

module.exports = {
  key: KEY,
  noun: 'Followed Account',
  display: {
    label: 'New Followed Account (Instant)',
    description:
      'Triggers when a TikTok user follows a new account, by webhook within about 15 minutes ' +
      '(or within your Check Every setting).',
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
