/** `npm run keap-sandbox`: the Keap stand-in on its own, for trying memberhook without a Keap account. */
import { runKeapSandboxCli } from './index.js';

runKeapSandboxCli().catch((err: unknown) => {
  process.stderr.write(`Keap sandbox: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
