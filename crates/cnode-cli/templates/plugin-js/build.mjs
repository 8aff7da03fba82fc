// Builds the plugin beside its manifest:
//   npm install && node build.mjs     → dist/plugin.toml + dist/{{DIR}}.wasm
// then: cnode plugin install dist
//
// A cnode JavaScript plugin is the node's shared JavaScript engine (a
// componentize-js component, engine/loader.js) with the plugin's script —
// src/component.js and what it imports, bundled into one CommonJS file — in
// a `cnode:script` custom section. A node compiles each engine once and runs
// every plugin built on it on that one copy.
//
// The engine is built once into engine/dist/js-engine.wasm (~10 s, ~12 MB).
// To build on an engine other plugins use (so they share it on a node), set
// CNODE_JS_ENGINE to that file.

import { copyFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { componentize } from '@bytecodealliance/componentize-js';
import { rolldown } from 'rolldown';

import { buildEngine, buildPlugin } from './engine/jsplugin.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const started = Date.now();

async function exists(path) {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

let engine = process.env.CNODE_JS_ENGINE;
if (engine) {
  if (!(await exists(engine))) {
    console.error(`build.mjs: CNODE_JS_ENGINE names ${engine}, which does not exist`);
    process.exit(1);
  }
} else {
  engine = join(here, 'engine', 'dist', 'js-engine.wasm');
  if (!(await exists(engine))) {
    const bytes = await buildEngine({ componentize, witPath: join(here, 'wit'), out: engine });
    console.log(`built the engine ${engine} (${(bytes / 1e6).toFixed(1)} MB)`);
  }
}

const out = join(here, 'dist', '{{DIR}}.wasm');
const { bytes, scriptBytes } = await buildPlugin({
  rolldown,
  entry: join(here, 'src', 'component.js'),
  engine,
  out,
});
await copyFile(join(here, 'plugin.toml'), join(here, 'dist', 'plugin.toml'));
const seconds = ((Date.now() - started) / 1000).toFixed(1);
console.log(`built ${out} (${(bytes / 1e6).toFixed(1)} MB, script ${scriptBytes} bytes, ${seconds} s)`);
