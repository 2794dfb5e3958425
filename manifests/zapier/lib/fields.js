'use strict';

// Field lists come from fields.json, which manifests/zapier/generate_fields.py
// generates from the service's marshmallow schemas (schemas/*.py). Do not
// write field keys by hand here: edit the schemas (or the labels in
// generate_fields.py) and regenerate.
const FIELDS = require('../fields.json');

const clone = (value) => JSON.parse(JSON.stringify(value));

const operationFields = (key) => {
  const op = FIELDS.operations[key];
  if (!op) throw new Error(`fields.json has no operation ${key}`);
  return op;
};

const inputFields = (key) => clone(operationFields(key).inputFields);
const outputFields = (key) => clone(operationFields(key).outputFields);
const requestKeys = (key) => operationFields(key).requestKeys.slice();

module.exports = { FIELDS, inputFields, outputFields, requestKeys };
