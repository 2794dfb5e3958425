'use strict';

const { pollEvents } = require('../lib/poll');
const { CROWD_EVENT_SAMPLE } = require('../lib/samples');
const { pollingTrigger } = require('../lib/triggers');

const KEY = 'followed_by_many';

// The polling route: accounts that at least Minimum Handles of the watchlist followed within
// Within Days, newest first, each once (when the threshold was crossed). Each handle is refreshed
// as New Followed Account refreshes it, so polls inside Check Every answer for free.
const listCrowdEvents = pollEvents(KEY, 'triggers/followed-by-many', 'accounts followed by many');

// Deduplicated on eventId (its outputField is `primary`), like the other event triggers.
module.exports = {
  ...pollingTrigger(KEY, {
    noun: 'Account Followed by Many',
    label: 'Followed by Many',
    description:
      'Triggers when several handles of your watchlist (at least Minimum Handles) follow the same TikTok account ' +
      'within Within Days: once per account, when that many is reached. Each handle is checked as a new-follows ' +
      'watch, 1 DumplingAI credit per handle per check; follows made before a handle was watched never count.',
    perform: listCrowdEvents,
    sample: CROWD_EVENT_SAMPLE,
  }),
  listCrowdEvents,
};
