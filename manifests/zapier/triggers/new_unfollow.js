'use strict';

const { pollEvents } = require('../lib/poll');
const { UNFOLLOW_EVENT_SAMPLE } = require('../lib/samples');
const { pollingTrigger } = require('../lib/triggers');

const KEY = 'new_unfollow';

// The polling route: unfollows, newest first. The service sweeps the list only when the last
// sweep is "Check for Unfollows Every" hours old; other polls answer from its journal.
const listUnfollowEvents = pollEvents(KEY, 'triggers/unfollowed', 'unfollows');

// Deduplicated on eventId (its outputField is `primary`): unfollowing the same account again
// after following it again is a new item.
module.exports = {
  ...pollingTrigger(KEY, {
    noun: 'Unfollowed Account',
    label: 'New Unfollow',
    description:
      'Triggers when a TikTok user stops following an account. Seen by reading the whole following list at most every "Check for Unfollows Every" hours (default 24): about 1 DumplingAI credit per 100 accounts followed per sweep, plus 1 from the second sweep on; checks in between cost 1 credit and also notice unfollows among the newest accounts they read, at no extra credit.',
    perform: listUnfollowEvents,
    sample: UNFOLLOW_EVENT_SAMPLE,
  }),
  listUnfollowEvents,
};
