'use strict';

const { apiUrl } = require('../lib/api');
const { requestBody } = require('../lib/body');
const { inputFields, outputFields } = require('../lib/fields');
const { CHECK_SAMPLE } = require('../lib/samples');

const KEY = 'check_following';

// "Does A follow B?": the service reads A's following list, newest follow first, and stops at
// the page where B is. Always ONE result, so a Zap can branch on Follows (and on Complete
// Answer: a "no" that covers only part of a long list is not a certain no).
const perform = async (z, bundle) => {
  const response = await z.request({
    method: 'POST',
    url: apiUrl('following/check'),
    body: requestBody(KEY, bundle.inputData),
  });
  return [response.data];
};

module.exports = {
  key: KEY,
  noun: 'Follow Check',
  display: {
    label: 'Find Whether a User Follows an Account',
    description:
      'Finds out whether a TikTok user follows a given account. Costs 1 DumplingAI credit per page of 100 accounts read: an account followed recently is found on the first page; a "no" reads up to 10 pages (about 20 seconds at most), and says whether the whole list was read.',
  },
  operation: {
    inputFields: inputFields(KEY),
    perform,
    sample: CHECK_SAMPLE,
    outputFields: outputFields(KEY),
  },
};
