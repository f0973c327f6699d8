import { register } from 'node:module';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';

let registered = false;

/**
 * Lets every plugin `import ... from 'memberhook/plugin'`, wherever it lives: a file in PLUGINS_DIR, a folder with a
 * package.json of its own, or an npm package (none of which could find memberhook by Node's own resolution, since
 * memberhook is not installed in a node_modules of theirs). A module resolution hook answers that one specifier
 * with this build's sdk module; everything else resolves as usual. Registered only when there are plugins to load.
 */
export function resolveSdkForPlugins(): void {
  if (registered) return;
  registered = true;
  // src/sdk.ts, run from source (tests, through tsx); dist/sdk.js when built.
  const sdkUrl = new URL(`../sdk${extname(fileURLToPath(import.meta.url))}`, import.meta.url).href;
  const hook = `export async function resolve(specifier, context, next) {
  // Handed on down the chain as the module's own address, so a loader in front (tsx, when run from source) loads it.
  return next(specifier === 'memberhook/plugin' ? ${JSON.stringify(sdkUrl)} : specifier, context);
}`;
  register(`data:text/javascript,${encodeURIComponent(hook)}`);
}
