'use strict';

const { FIELDS } = require('../lib/fields');
const { UNFOLLOW_EVENT_SAMPLE } = require('../lib/samples');
const { hookTrigger } = require('../lib/triggers');
const { listUnfollowEvents } = require('./new_unfollow');

const KEY = 'new_unfollow_instant';

module.exports = hookTrigger(KEY, {
  noun: 'Unfollowed Account',
  label: 'New Unfollow (Instant)',
  description:
    'Triggers when a TikTok user stops following an account, delivered by webhook after each sweep of the following list (at most every "Check for Unfollows Every" hours, default 24): about 1 DumplingAI credit per 100 accounts followed per sweep, plus 1 from the second sweep on. Unfollows among the newest accounts are also noticed by the regular checks of new follows, at no extra credit.',
  event: 'unfollowed',
  // Each delivery is one unfollow event, signed; only its named fields are passed on.
  eventKeys: FIELDS.unfollowEvent.map((f) => f.key),
  performList: listUnfollowEvents,
  sample: UNFOLLOW_EVENT_SAMPLE,
});
