'use strict';

// Definitions of the event triggers that come in pairs (polling + REST hook) and differ only
// in their route, event and words: unfollows, followed by many. Fields come from fields.json.
const { inputFields, outputFields } = require('./fields');
const { makePerform, makeSubscribe, performUnsubscribe } = require('./hooks');

// A polling trigger; Zapier dedupes it on the output field marked `primary` (eventId).
const pollingTrigger = (key, { noun, label, description, perform, sample }) => ({
  key,
  noun,
  display: { label, description },
  operation: { type: 'polling', inputFields: inputFields(key), perform, sample, outputFields: outputFields(key) },
});

// Its REST-hook twin: subscribes for `event`; each signed delivery is one event, of which only
// `eventKeys` are passed on. performList (samples, "load more") is the polling route.
const hookTrigger = (key, { noun, label, description, event, eventKeys, performList, sample }) => ({
  key,
  noun,
  display: { label, description },
  operation: {
    type: 'hook',
    inputFields: inputFields(key),
    performSubscribe: makeSubscribe(key, event),
    performUnsubscribe,
    perform: makePerform(eventKeys),
    performList,
    sample,
    outputFields: outputFields(key),
  },
});

module.exports = { pollingTrigger, hookTrigger };
