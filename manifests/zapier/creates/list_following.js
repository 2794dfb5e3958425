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
  return response.data;
};

// A read that answers ONE object (the page(s) of accounts plus the cursor to
// continue) is modelled as a create: a search would only hand the Zap its
// first result and add "found / not found" semantics that make no sense here.
// The accounts arrive as line items (`following[]...`).
module.exports = {
  key: KEY,
  noun: 'Following List',
  display: {
    label: 'List Accounts a User Follows',
    description:
      'Lists the TikTok accounts a user follows, newest follow first (1 DumplingAI credit per page).',
  },
  operation: {
    inputFields: inputFields(KEY),
    perform,
    sample: FOLLOWING_SAMPLE,
    outputFields: outputFields(KEY),
  },
};
