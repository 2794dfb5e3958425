'use strict';

const { apiUrl } = require('../lib/api');
const { requestBody } = require('../lib/body');
const { inputFields, outputFields } = require('../lib/fields');
const { UNFOLLOW_EVENT_SAMPLE } = require('../lib/samples');

const KEY = 'new_unfollow';

// The polling route: unfollows, newest first. The service sweeps the list only when the last
// sweep is "Check for Unfollows Every" hours old; other polls answer from its journal.
const listUnfollowEvents = async (z, bundle) => {
  const body = requestBody(KEY, bundle.inputData);
  const limit = Number(bundle.meta && bundle.meta.limit);
  if (Number.isInteger(limit) && limit > 0) {
    body.limit = Math.min(limit, 300); // TriggerRequestSchema MAX_ITEMS
  }
  const response = await z.request({ method: 'POST', url: apiUrl('triggers/unfollowed'), body });
  if (!Array.isArray(response.data)) {
    throw new z.errors.Error(
      'The TikTok Following service answered something other than a list of unfollows.',
      'unexpected_response',
      response.status,
    );
  }
  return response.data;
};

// Deduplicated on eventId (its outputField is `primary`): unfollowing the same account again
// after following it again is a new item.
module.exports = {
  key: KEY,
  noun: 'Unfollowed Account',
  display: {
    label: 'New Unfollow',
    description:
      'Triggers when a TikTok user stops following an account. Seen by reading the whole following list at most every "Check for Unfollows Every" hours (default 24): about 1 DumplingAI credit per 100 accounts followed per sweep, plus 1 from the second sweep on; checks in between cost 1 credit.',
  },
  operation: {
    type: 'polling',
    inputFields: inputFields(KEY),
    perform: listUnfollowEvents,
    sample: UNFOLLOW_EVENT_SAMPLE,
    outputFields: outputFields(KEY),
  },
  listUnfollowEvents,
};
