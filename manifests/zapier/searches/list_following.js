'use strict';

const { apiUrl } = require('../lib/api');
const { requestBody } = require('../lib/body');
const { inputFields, outputFields } = require('../lib/fields');
const { FOLLOWING_SAMPLE } = require('../lib/samples');

const KEY = 'list_following';

// A read, so a search (Zapier's rule: creates change something). It answers ONE result: the
// list itself, whose accounts are line items (`following[]...`) that Looping by Zapier can
// iterate, with the cursor to continue. A user who follows nobody is still one (empty) list.
// Filters are applied by the service, per page read.
const perform = async (z, bundle) => {
  const response = await z.request({
    method: 'POST',
    url: apiUrl('following'),
    body: requestBody(KEY, bundle.inputData),
  });
  return [response.data];
};

module.exports = {
  key: KEY,
  noun: 'Following List',
  display: {
    label: 'Find Accounts a User Follows',
    description:
      'Finds the TikTok accounts a user follows, newest follow first, as line items (1 DumplingAI credit per page read, filtered pages included).',
  },
  operation: {
    inputFields: inputFields(KEY),
    perform,
    sample: FOLLOWING_SAMPLE,
    outputFields: outputFields(KEY),
  },
};
