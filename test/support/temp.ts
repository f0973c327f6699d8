import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';

/** A fresh folder for this test file's database and outbox, removed when the file's tests end. */
export function tempDataDir(prefix = 'memberhook-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * A plugins folder that does not exist: tests load only the plugins they name, never what a developer keeps in the
 * checkout's ./plugins.
 */
export const NO_PLUGINS_DIR = join(tmpdir(), 'memberhook-test-no-plugins');
