import { chmodSync, lstatSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** Folders in the data folder: the owner only (the database, the site key and the outbox's emails are in there). */
export const PRIVATE_DIR_MODE = 0o700;
/** Files in the data folder. */
export const PRIVATE_FILE_MODE = 0o600;

/** Folders in the data folder that memberhook writes into (the mailer's `.eml` files), tightened to their depth. */
const OWN_SUBFOLDERS = new Set(['outbox']);

/**
 * Makes the data folder (created if missing), the files in it and the folders memberhook writes into readable by
 * the owner only, and returns the paths whose modes it tightened: files from an older version (SQLite's 0644
 * database, a 0755 folder) or copied in by hand. Other folders are left as they are (a DATA_DIR pointed at a folder
 * shared with other things must not have everything under it changed), and so are symbolic links (their targets may
 * not be ours).
 */
export function securePrivateDir(dir: string): string[] {
  mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  const changed: string[] = [];
  const tighten = (path: string, isDir: boolean) => {
    const mode = lstatSync(path).mode & 0o777;
    const wanted = isDir ? PRIVATE_DIR_MODE : PRIVATE_FILE_MODE;
    // Only group and other bits are taken away: an owner's own narrower mode (a read-only key file) is kept.
    if ((mode & 0o077) === 0) return;
    chmodSync(path, mode & wanted);
    changed.push(path);
  };
  const walk = (folder: string, descend: (name: string) => boolean) => {
    tighten(folder, true);
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name);
      if (entry.isDirectory() && descend(entry.name)) walk(path, () => true);
      else if (entry.isFile()) tighten(path, false);
    }
  };
  walk(dir, (name) => OWN_SUBFOLDERS.has(name));
  return changed;
}
