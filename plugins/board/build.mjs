// Builds the board into a WebAssembly component:
//   node build.mjs [OUT]        (default dist/board.wasm)
//
// Uses the @bytecodealliance/componentize-js 0.23 JavaScript API (the jco
// 1.35 CLI's `componentize` fails on this toolchain; see plugins/README.md).
// The `http` and `fetch-event` features are disabled so the component does
// not import wasi:http, which the cnode host does not provide.

import { mkdir, writeFile, rename } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { componentize } from '@bytecodealliance/componentize-js';
import { componentWit } from '@bytecodealliance/jco';

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? join(here, 'dist', 'board.wasm'));

// componentize-js maps the current directory into the build sandbox and
// resolves relative imports from there: run from the plugin directory so
// src/board.js is found and nothing else is exposed.
process.chdir(here);

const started = Date.now();
const { component, imports } = await componentize({
  sourcePath: join(here, 'src', 'component.js'),
  witPath: resolve(here, '..', '..', 'wit'),
  worldName: 'service',
  disableFeatures: ['http', 'fetch-event'],
});

// What the component really imports (the engine's WASI imports included,
// which componentize's own `imports` list leaves out). Refuse one the host
// cannot link: wasi:http would mean a feature was left on.
const wit = await componentWit(component);
const imported = [...wit.matchAll(/^\s*import ([^;]+);/gm)].map((m) => m[1].trim());
const wasiHttp = imported.filter((name) => name.startsWith('wasi:http'));
if (wasiHttp.length > 0) {
  console.error(`build.mjs: the component imports ${wasiHttp.join(', ')}; the cnode host does not provide wasi:http`);
  process.exit(1);
}

await mkdir(dirname(out), { recursive: true });
// Write beside the target and rename, so a failed build never leaves a
// half-written component that looks newer than the sources.
const tmp = `${out}.tmp${process.pid}`;
await writeFile(tmp, component);
await rename(tmp, out);
const seconds = ((Date.now() - started) / 1000).toFixed(1);
console.log(`board: ${out} (${(component.length / 1e6).toFixed(1)} MB, ${seconds} s)`);
console.log(`board: imports ${imported.join(', ')}`);
