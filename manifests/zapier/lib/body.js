'use strict';

// The JSON body of a request, built from the user's inputs for the keys an operation sends
// (fields.json requestKeys) and typed by the operation's generated inputFields. Empty inputs
// are left out (the service's defaults apply); a value that is not what it should be is sent
// as typed, so that the service answers 400 naming the field.
const { FIELDS } = require('./fields');

const isEmpty = (value) => value === undefined || value === null || value === '';

const toInt = (value) => {
  const n = Number(value);
  return Number.isInteger(n) ? n : value;
};

const toBool = (value) => {
  if (typeof value === 'boolean') return value;
  const text = String(value).trim().toLowerCase();
  if (['true', 'yes', '1'].includes(text)) return true;
  if (['false', 'no', '0'].includes(text)) return false;
  return value;
};

// A Zapier list field gives an array (mapped line items may also arrive as a comma-separated
// string); empty entries are dropped, and an empty list means "not set".
const toList = (value) => {
  const items = Array.isArray(value) ? value : String(value).split(',');
  const kept = items.map((v) => (typeof v === 'string' ? v.trim() : v)).filter((v) => !isEmpty(v));
  return kept.length ? kept : undefined;
};

const CONVERT = { integer: toInt, boolean: toBool };

const requestBody = (key, inputData, skip = []) => {
  const op = FIELDS.operations[key];
  const specs = Object.fromEntries(op.inputFields.map((f) => [f.key, f]));
  const body = {};
  for (const name of op.requestKeys) {
    const spec = specs[name];
    if (!spec || skip.includes(name)) continue;
    const raw = (inputData || {})[name];
    if (isEmpty(raw)) continue;
    const value = spec.list ? toList(raw) : (CONVERT[spec.type] || ((v) => v))(raw);
    if (value !== undefined) body[name] = value;
  }
  return body;
};

module.exports = { requestBody, toInt, toBool, toList };
