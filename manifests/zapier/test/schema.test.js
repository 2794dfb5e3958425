'use strict';

// (a) The definition validates against zapier-platform-schema 19.1.0: its JSON
// schema AND its built-in functional constraints (validateAppDefinition runs
// both), exactly as `zapier-platform validate` does before a push.
const test = require('node:test');
const assert = require('node:assert/strict');

const { validateAppDefinition } = require('zapier-platform-schema');
const { App, schemaTools, serialized, cloneDefinition, installedVersion } = require('./helpers');

const describe = (errors) =>
  errors.map((e) => `${e.property || '(root)'}: ${e.message}`).join('\n');

test('core and schema are the pinned 19.1.0', () => {
  assert.equal(installedVersion('zapier-platform-core'), '19.1.0');
  assert.equal(installedVersion('zapier-platform-schema'), '19.1.0');
  assert.equal(App.platformVersion, '19.1.0');
});

test('definition validates with zapier-platform-schema (zero errors)', () => {
  const result = validateAppDefinition(serialized());
  assert.deepEqual(result.errors, [], describe(result.errors));
});

test("core's own validate command agrees (zero errors)", () => {
  const errors = schemaTools.validateApp(schemaTools.compileApp(cloneDefinition(App)));
  assert.deepEqual(errors, [], describe(errors));
});

test('validator is not vacuous: a broken definition is rejected', () => {
  const broken = serialized();
  broken.triggers.new_following.display.label = 'X'; // JSON schema: minLength 2
  broken.searches.list_following.key = 'other_key';
  const result = validateAppDefinition(broken);
  assert.equal(result.errors.length, 2, describe(result.errors));
  // NB: the 19.1.0 schema does NOT require samples at the app level (its
  // requiredSamples constraint only runs for resources); constraints.test.js
  // checks samples itself.
});
