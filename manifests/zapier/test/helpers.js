'use strict';

// Shared by the tests (not a test itself; node --test just loads it).
// The definition as Zapier's CLI sees it.
const App = require('../index');
// The same compile + clean steps `zapier-platform validate` / `push` run
// (zapier-platform-core exports ./src/*).
const schemaTools = require('zapier-platform-core/src/tools/schema');

// JSON of the definition with functions replaced by Zapier's "$func$N$f$" markers.
const serialized = () => schemaTools.serializeApp(schemaTools.compileApp(cloneDefinition(App)));

// compileApp mutates its argument; give it a copy that keeps the functions.
function cloneDefinition(value) {
  if (Array.isArray(value)) return value.map(cloneDefinition);
  if (value && typeof value === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = cloneDefinition(v);
    return out;
  }
  return value;
}

// Versions of the installed packages (their package.json is not an export).
const installedVersion = (pkg) => {
  const path = require('node:path');
  const fs = require('node:fs');
  let dir = path.dirname(require.resolve(pkg));
  while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
};

const OPERATION_TYPES = ['triggers', 'searches', 'creates'];

const operations = (definition) => {
  const out = [];
  for (const type of OPERATION_TYPES) {
    for (const [mapKey, op] of Object.entries(definition[type] || {})) {
      out.push({ type, mapKey, op });
    }
  }
  return out;
};

module.exports = { App, schemaTools, serialized, cloneDefinition, operations, installedVersion };
