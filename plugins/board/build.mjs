// Builds the board for the node's shared JavaScript engine:
//   node build.mjs [OUT]        (default dist/board.wasm)
//
// 1. The engine (../js-engine/loader.js through componentize-js 0.23, world
//    `js-engine`) is built into ../js-engine/dist/js-engine.wasm when it is
//    missing or older than its sources (~10 s).
// 2. src/component.js and what it imports are bundled into one CommonJS
//    script (rolldown), appended to the engine as the `cnode:script` custom
//    section (well under a second).
//
// Every JavaScript plugin built from that engine file shares one compiled
// copy of it on a node. The jco 1.35 CLI's `componentize` fails on this
// toolchain, hence the JavaScript APIs (see plugins/README.md).

import { stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { componentize } from '@bytecodealliance/componentize-js';
import { rolldown } from 'rolldown';

import { buildEngine, buildPlugin } from '../js-engine/jsplugin.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? join(here, 'dist', 'board.wasm'));
const engineDir = resolve(here, '..', 'js-engine');
const engine = join(engineDir, 'dist', 'js-engine.wasm');
const witPath = resolve(here, '..', '..', 'wit');

async function mtime(path) {
  try {
    return (await stat(path)).mtimeMs;
  } catch {
    return -1;
  }
}

const started = Date.now();
const engineSources = [join(engineDir, 'loader.js'), join(witPath, 'cnode-plugin.wit')];
const engineTime = await mtime(engine);
if (engineTime < 0 || (await Promise.all(engineSources.map(mtime))).some((t) => t > engineTime)) {
  const bytes = await buildEngine({ componentize, witPath, out: engine });
  console.log(`js-engine: ${engine} (${(bytes / 1e6).toFixed(1)} MB, ${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

const { bytes, scriptBytes } = await buildPlugin({
  rolldown,
  entry: join(here, 'src', 'component.js'),
  engine,
  out,
});
const seconds = ((Date.now() - started) / 1000).toFixed(1);
console.log(`board: ${out} (${(bytes / 1e6).toFixed(1)} MB, script ${scriptBytes} bytes, ${seconds} s)`);
