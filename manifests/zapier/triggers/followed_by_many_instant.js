'use strict';

const { FIELDS } = require('../lib/fields');
const { CROWD_EVENT_SAMPLE } = require('../lib/samples');
const { hookTrigger } = require('../lib/triggers');
const { listCrowdEvents } = require('./followed_by_many');

const KEY = 'followed_by_many_instant';

module.exports = hookTrigger(KEY, {
  noun: 'Account Followed by Many',
  label: 'Followed by Many (Instant)',
  description:
    'Triggers when several handles of your watchlist (at least Minimum Handles) follow the same TikTok account ' +
    'within Within Days, delivered by webhook once per account. Each handle is checked as a new-follows watch, ' +
    '1 DumplingAI credit per handle per check; follows made before a handle was watched never count.',
  event: 'followed_by_many',
  eventKeys: FIELDS.crowdEvent.map((f) => f.key),
  performList: listCrowdEvents,
  sample: CROWD_EVENT_SAMPLE,
});
