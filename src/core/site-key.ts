import { randomBytes } from 'node:crypto';
import { linkSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { Config } from '../config.js';
import { PRIVATE_FILE_MODE } from './data-dir.js';
import { StartupError } from './errors.js';
import type { Logger } from './logger.js';
import { SecretBox } from './secret-box.js';
import type { SettingsStore } from './settings.js';

/**
 * A value sealed with the site key when the key first met this database. Checked at every start, so a wrong or
 * replaced key stops the start with one clear line, before anything tries to read a secret with it.
 */
const KEY_CHECK_SETTING = 'site_key.check';
const KEY_CHECK_CONTEXT = 'site-key-check';

/**
 * The site key, as the settings say: SITE_KEY, or the file SITE_KEY_FILE names, or `<DATA_DIR>/site.key`, which is
 * created (0600) on the first start. Both threads of the app call this with the same settings and so read the same
 * key; the second finds the file the first made. A default key file that went missing while the database holds
 * values sealed with it is not made again (a new key would open nothing): the start stops and says so.
 */
export function openSiteKey(config: Pick<Config, 'siteKey'>, settings: SettingsStore, logger: Logger): SecretBox {
  const { key, file, fileFromSetting } = config.siteKey;
  const box = key !== undefined ? new SecretBox(SecretBox.parseKey(key)!, 'SITE_KEY') : fromFile(file, fileFromSetting, settings, logger);
  const check = settings.setIfAbsent(KEY_CHECK_SETTING, box.seal('memberhook', KEY_CHECK_CONTEXT));
  if (!check.inserted) box.open(check.value, KEY_CHECK_CONTEXT, "The database's secrets");
  return box;
}

function fromFile(file: string, fileFromSetting: boolean, settings: SettingsStore, logger: Logger): SecretBox {
  const source = fileFromSetting ? `SITE_KEY_FILE (${file})` : `the key file ${file}`;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new StartupError(`cannot read the site key from ${source}: ${(err as Error).message}`);
    }
    if (fileFromSetting) throw new StartupError(`SITE_KEY_FILE names ${file}, which does not exist`);
    if (settings.get(KEY_CHECK_SETTING) !== undefined) {
      throw new StartupError(
        `the site key file ${file} is missing, and the database's secrets are encrypted with it: restore it from the ` +
          'backup made with the database (or set SITE_KEY or SITE_KEY_FILE to it); see "Site key and backups" in the README',
      );
    }
    text = createKeyFile(file, logger);
  }
  const parsed = SecretBox.parseKey(text);
  if (!parsed) throw new StartupError(`${source} does not hold a site key (expected 32 random bytes in base64)`);
  if (fileFromSetting && (statSync(file).mode & 0o077) !== 0) {
    logger.warn({ file }, 'the site key file can be read by other users of this machine; make it readable by memberhook only (chmod 600)');
  }
  return new SecretBox(parsed, source);
}

/**
 * Writes a new key unless another process just did (then its key is the one). The key is written whole under a
 * temporary name and linked into place, so nobody ever reads a half-written key file.
 */
function createKeyFile(file: string, logger: Logger): string {
  const generated = SecretBox.generateKey();
  const temp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    writeFileSync(temp, `${generated}\n`, { flag: 'wx', mode: PRIVATE_FILE_MODE });
    linkSync(temp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return readFileSync(file, 'utf8');
    throw new StartupError(`cannot create the site key file ${file}: ${(err as Error).message}`);
  } finally {
    rmSync(temp, { force: true });
  }
  logger.info({ file }, 'created the site key that encrypts the secrets stored in the database; back it up with the database');
  return generated;
}
