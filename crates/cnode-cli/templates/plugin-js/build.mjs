// Builds the plugin into a WebAssembly component beside its manifest:
//   npm ci && node build.mjs     → dist/plugin.toml + dist/{{DIR}}.wasm
// then: cnode plugin install dist
//
// Uses the @bytecodealliance/componentize-js 0.23 JavaScript API. The
// `http` and `fetch-event` features are disabled so the component does not
// import wasi:http, which the cnode host does not provide (use the
// cnode:plugin/http import instead).

import { copyFile, mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { componentize } from '@bytecodealliance/componentize-js';

const here = dirname(fileURLToPath(import.meta.url));
// componentize-js resolves relative imports from the current directory.
process.chdir(here);

const started = Date.now();
const { component } = await componentize({
  sourcePath: join(here, 'src', 'component.js'),
  witPath: join(here, 'wit'),
  worldName: 'service',
  disableFeatures: ['http', 'fetch-event'],
});

const out = join(here, 'dist', '{{DIR}}.wasm');
await mkdir(dirname(out), { recursive: true });
// Write beside the target and rename: a failed build leaves no half file.
const tmp = `${out}.tmp${process.pid}`;
await writeFile(tmp, component);
await rename(tmp, out);
await copyFile(join(here, 'plugin.toml'), join(here, 'dist', 'plugin.toml'));
const seconds = ((Date.now() - started) / 1000).toFixed(1);
console.log(`built ${out} (${(component.length / 1e6).toFixed(1)} MB, ${seconds} s)`);
