// Bundles a JavaScript step into one module for componentize-js: the
// step's own modules and its npm dependencies, with `hookflow-step` the
// helper hookflow ships; the component's imports (`wasi:*`,
// `hookflow:*`) stay imports. Usage: node bundle.mjs ENTRY HELPER OUT
import { rolldown } from 'rolldown';

const [entry, helper, out] = process.argv.slice(2);
const bundle = await rolldown({
  input: entry,
  platform: 'browser',
  external: [/^wasi:/, /^hookflow:/],
  resolve: { alias: { 'hookflow-step': helper } },
  logLevel: 'warn',
});
await bundle.write({ file: out, format: 'esm', codeSplitting: false });
await bundle.close();
