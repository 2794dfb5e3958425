'use strict';

const { apiUrl } = require('../lib/api');
const { inputFields, outputFields, requestKeys } = require('../lib/fields');
const { FOLLOWING_SAMPLE } = require('../lib/samples');

const KEY = 'list_following';

// Zapier sends integer fields as numbers or numeric strings; empty means "not set".
const toInt = (value) => {
  if (value === undefined || value === null || value === '') return undefined;
  const n = Number(value);
  return Number.isInteger(n) ? n : value; // let the service answer 400 with its own sentence
};

// A read, so a search (Zapier's rule: creates change something). It answers ONE result: the
// list itself, whose accounts are line items (`following[]...`) that Looping by Zapier can
// iterate, with the cursor to continue. A user who follows nobody is still one (empty) list.
const perform = async (z, bundle) => {
  const input = bundle.inputData || {};
  const body = { handle: input.handle };
  for (const key of requestKeys(KEY)) {
    if (key === 'handle') continue;
    const value = toInt(input[key]);
    if (value !== undefined) body[key] = value;
  }
  const response = await z.request({
    method: 'POST',
    url: apiUrl('following'),
    body,
  });
  return [response.data];
};

module.exports = {
  key: KEY,
  noun: 'Following List',
  display: {
    label: 'Find Accounts a User Follows',
    description:
      'Finds the TikTok accounts a user follows, newest follow first, as line items (1 DumplingAI credit per page read).',
  },
  operation: {
    inputFields: inputFields(KEY),
    perform,
    sample: FOLLOWING_SAMPLE,
    outputFields: outputFields(KEY),
  },
};
