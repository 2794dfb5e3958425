'use strict';

const { apiUrl } = require('./api');
const { requestBody } = require('./body');

const MAX_ITEMS = 300; // schemas/triggers.py MAX_ITEMS: the most one poll answers

// The perform of a polling trigger: POST the operation's inputs to its route, which answers a
// bare array of events, newest first. Zapier's page size (bundle.meta.limit) is sent as `limit`.
// `what` names the items in the error a user sees when the answer is not a list.
const pollEvents = (key, path, what) => async (z, bundle) => {
  const body = requestBody(key, bundle.inputData);
  const limit = Number(bundle.meta && bundle.meta.limit);
  if (Number.isInteger(limit) && limit > 0) {
    body.limit = Math.min(limit, MAX_ITEMS);
  }
  const response = await z.request({ method: 'POST', url: apiUrl(path), body });
  if (!Array.isArray(response.data)) {
    throw new z.errors.Error(
      `The TikTok Following service answered something other than a list of ${what}.`,
      'unexpected_response',
      response.status,
    );
  }
  return response.data;
};

module.exports = { pollEvents, MAX_ITEMS };
