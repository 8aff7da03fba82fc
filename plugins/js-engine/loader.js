// The cnode shared JavaScript engine: a componentize-js component for the
// `js-engine` world that runs a plugin's script, which the node hands it
// through the `cnode:plugin/script` import.
//
// A JavaScript plugin is this engine with its script (a CommonJS bundle) in
// a custom section `cnode:script`. The node strips the section, compiles
// the engine once and runs every plugin built on the same engine on that one
// copy of compiled code: ten JavaScript plugins cost one engine, not ten.
//
// The script is evaluated on the first export call of an instance; the node
// keeps an instance whose calls succeed for the plugin's next calls, so that
// happens once per instance, not per call. It may `require` only the
// cnode:plugin interfaces below; it exports `handle`, and optionally
// `onRecord` and `tick`.

import * as records from 'cnode:plugin/records@0.1.0';
import * as blobs from 'cnode:plugin/blobs@0.1.0';
import * as kv from 'cnode:plugin/kv@0.1.0';
import * as http from 'cnode:plugin/http@0.1.0';
import * as log from 'cnode:plugin/log@0.1.0';
import * as clock from 'cnode:plugin/clock@0.1.0';
import * as random from 'cnode:plugin/random@0.1.0';
import { source } from 'cnode:plugin/script@0.1.0';

const INTERFACES = {
  'cnode:plugin/records@0.1.0': records,
  'cnode:plugin/blobs@0.1.0': blobs,
  'cnode:plugin/kv@0.1.0': kv,
  'cnode:plugin/http@0.1.0': http,
  'cnode:plugin/log@0.1.0': log,
  'cnode:plugin/clock@0.1.0': clock,
  'cnode:plugin/random@0.1.0': random,
};

function requireInterface(name) {
  const found = INTERFACES[name];
  if (found === undefined) {
    throw new Error(`the script requires '${name}': only the cnode:plugin@0.1.0 interfaces can be required`);
  }
  return found;
}

let plugin;

/** The script's exports, evaluating it on first use. */
function load() {
  if (plugin === undefined) {
    const text = source();
    if (text.length === 0) {
      throw new Error('this component has no cnode:script section: build it with plugins/js-engine/jsplugin.mjs');
    }
    const module = { exports: {} };
    new Function('require', 'module', 'exports', text)(requireInterface, module, module.exports);
    if (typeof module.exports.handle !== 'function') {
      throw new Error('the script does not export a handle(request) function');
    }
    plugin = module.exports;
  }
  return plugin;
}

export function handle(request) {
  return load().handle(request);
}

export function onRecord(record) {
  const f = load().onRecord;
  if (typeof f === 'function') f(record);
}

export function tick() {
  const f = load().tick;
  if (typeof f === 'function') f();
}
