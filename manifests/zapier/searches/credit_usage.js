'use strict';

const { apiUrl } = require('../lib/api');
const { inputFields, outputFields } = require('../lib/fields');
const { USAGE_SAMPLE } = require('../lib/samples');

const KEY = 'credit_usage';

// What watching cost this connection: today's credits against its Daily Credit Budget,
// the last 30 days, and each watched handle. Free (no DumplingAI call). A search answers
// a list: here one report, so a Zap can filter on "Budget Left Today" (e.g. warn at 80%).
const perform = async (z) => {
  const response = await z.request({ method: 'GET', url: apiUrl('usage') });
  return [response.data];
};

module.exports = {
  key: KEY,
  noun: 'Credit Usage',
  display: {
    label: 'Get Credit Usage',
    description: 'Finds the DumplingAI credits this connection spent today, in the last 30 days, and per watched handle.',
  },
  operation: {
    inputFields: inputFields(KEY),
    perform,
    sample: USAGE_SAMPLE,
    outputFields: outputFields(KEY),
  },
};
