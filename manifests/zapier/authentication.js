'use strict';

const { apiUrl } = require('./lib/api');

// Checks the key against our service (which checks it upstream, or reuses a
// recent successful check so reconnecting does not spend credits).
const test = async (z, bundle) => {
  const response = await z.request({ method: 'GET', url: apiUrl('auth/test') });
  return response.data; // {ok: true, label: "DumplingAI key …abcd", cached}
};

// bundle.inputData is the test's answer. The service builds the label and
// never puts more than the key's last 4 characters in it.
// Belt and braces: a label that somehow contains the whole key is replaced.
const connectionLabel = (z, bundle) => {
  const label = bundle.inputData && bundle.inputData.label;
  const key = (bundle.authData && bundle.authData.api_key) || '';
  if (typeof label !== 'string' || !label) return 'DumplingAI';
  if (key && label.includes(key)) return `DumplingAI key …${key.slice(-4)}`;
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
  ],
  test,
  connectionLabel,
};
