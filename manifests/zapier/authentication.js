'use strict';

const { apiUrl } = require('./lib/api');

// Checks the key against our service (which checks it upstream, or reuses a
// recent successful check so reconnecting does not spend credits).
const test = async (z, bundle) => {
  const response = await z.request({ method: 'GET', url: apiUrl('auth/test') });
  return response.data; // {ok: true, label: "key …abcd", cached}
};

// bundle.inputData is the test's answer. Zapier already shows the app's name next to the
// label (its rule: no app name in it), so the service's label is just the key's mark:
// "key …abcd", or "key #1a2b3c" for keys too short to show any of (integration/security.py).
// Belt and braces: a label that somehow contains the whole key is never shown.
const connectionLabel = (z, bundle) => {
  const label = bundle.inputData && bundle.inputData.label;
  const key = (bundle.authData && bundle.authData.api_key) || '';
  if (typeof label !== 'string' || !label || (key && label.includes(key))) return 'API key';
  return label;
};

module.exports = {
  type: 'custom',
  fields: [
    {
      key: 'api_key',
      label: 'API Key',
      type: 'password',
      required: true,
      helpText:
        'Your DumplingAI API key. Find it (or create one) on your [DumplingAI API keys page](https://app.dumplingai.com/api-keys).',
    },
    {
      key: 'daily_budget',
      label: 'Daily Credit Budget',
      type: 'integer',
      required: false,
      helpText:
        'Optional: the most DumplingAI credits this connection may spend per day (UTC). Once reached, ' +
        'nothing more is checked until midnight UTC; triggers then answer from what was already found. ' +
        '0 spends nothing. Leave empty for no limit.',
    },
  ],
  test,
  connectionLabel,
};
