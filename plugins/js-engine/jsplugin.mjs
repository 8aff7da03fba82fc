// Builds JavaScript plugins for the cnode shared JavaScript engine.
//
//   buildEngine({ componentize, witPath, out })
//       componentize-js the engine (loader.js, world `js-engine`) into OUT.
//   buildPlugin({ rolldown, entry, engine, out })
//       bundles ENTRY (an ES module importing cnode:plugin interfaces) into
//       one CommonJS script and writes ENGINE + a `cnode:script` custom
//       section holding it to OUT.
//
// The caller passes componentize-js's `componentize` and rolldown's
// `rolldown` (from its own node_modules). Plugins built from the same engine
// file share one compiled copy of it on a node; see plugins/README.md.

import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** The custom section's name, as the node looks for it. */
export const SCRIPT_SECTION = 'cnode:script';
/** The largest script the node accepts, bytes. */
export const MAX_SCRIPT_BYTES = 1 << 20;

export async function buildEngine({ componentize, witPath, out }) {
  const cwd = process.cwd();
  // componentize-js maps the current directory into its build sandbox.
  process.chdir(here);
  try {
    const { component } = await componentize({
      sourcePath: join(here, 'loader.js'),
      witPath,
      worldName: 'js-engine',
      // No wasi:http import: the node does not provide it (plugins use
      // cnode:plugin/http).
      disableFeatures: ['http', 'fetch-event'],
    });
    await writeAtomically(out, component);
    return component.length;
  } finally {
    process.chdir(cwd);
  }
}

export async function buildPlugin({ rolldown, entry, engine, out }) {
  const bundle = await rolldown({
    input: entry,
    external: [/^cnode:plugin\//],
    platform: 'neutral',
    logLevel: 'warn',
  });
  let script;
  try {
    const { output } = await bundle.generate({ format: 'cjs' });
    script = output[0].code;
  } finally {
    await bundle.close();
  }
  const scriptBytes = new TextEncoder().encode(script);
  if (scriptBytes.length > MAX_SCRIPT_BYTES) {
    throw new Error(`the bundled script is ${scriptBytes.length} bytes; the node accepts at most ${MAX_SCRIPT_BYTES}`);
  }
  const base = await readFile(engine);
  const component = Buffer.concat([base, customSection(SCRIPT_SECTION, scriptBytes)]);
  await writeAtomically(out, component);
  return { bytes: component.length, scriptBytes: scriptBytes.length };
}

/** A WebAssembly custom section (id 0): name and payload. */
function customSection(name, payload) {
  const nameBytes = new TextEncoder().encode(name);
  const body = Buffer.concat([leb128(nameBytes.length), nameBytes, payload]);
  return Buffer.concat([Buffer.from([0]), leb128(body.length), body]);
}

function leb128(n) {
  const out = [];
  do {
    let byte = n & 0x7f;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}

/** Writes beside the target and renames: a failed build leaves no half file. */
async function writeAtomically(out, bytes) {
  await mkdir(dirname(out), { recursive: true });
  const tmp = `${out}.tmp${process.pid}`;
  await writeFile(tmp, bytes);
  await rename(tmp, out);
}
