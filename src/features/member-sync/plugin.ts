import { signingKey } from '../../core/signing-key.js';
import type { CorePlugin } from '../../plugins/types.js';
import { passwordWriteBack } from './jobs.js';
import { KeapPasswordSeen } from './keap-password-seen.js';
import { KeapMemberSync, type NewMemberDraft } from './service.js';
import type { KeapContact } from '../keap/types.js';

declare module '../../plugins/types.js' {
  interface PluginApi {
    /**
     * How a Keap contact becomes a member, as an `add` does it: what a new member takes from its contact (fields,
     * username, Keap password; NoFreeUsernameError when every username it could have is taken), and the fields alone.
     */
    readonly memberSync: {
      newMemberDraft(contact: KeapContact, reserved?: ReadonlySet<string>): Promise<NewMemberDraft>;
      fieldsFrom(contact: KeapContact): Promise<Record<string, unknown>>;
    };
  }
}

/**
 * Keap contacts into members: the `add`, `update` and `update_tags` HTTP Post actions (registered like any plugin's)
 * and the password's way both directions between members and Keap's password field.
 */
export const memberSyncPlugin: CorePlugin = {
  name: 'member-sync',
  description: 'Turns Keap contacts into members: the add, update and update_tags actions, and passwords to and from Keap\'s password field.',
  setup(api) {
    const { kernel } = api;
    const seen = new KeapPasswordSeen(kernel.db, () => signingKey(kernel, 'keap-password'));
    const sync = new KeapMemberSync({ keap: api.keap, members: api.members, jobs: kernel.jobs, hooks: kernel.hooks, site: api.siteSettings, seen });
    api.provide('memberSync', () => ({ newMemberDraft: (contact, reserved) => sync.newMemberDraft(contact, reserved), fieldsFrom: (contact) => sync.fieldsFrom(contact) }));
    api.webhooks.addAction('add', (job) => sync.add(job));
    api.webhooks.addAction('update', (job) => sync.update(job));
    api.webhooks.addAction('update_tags', (job) => sync.updateTags(job));
    api.jobs.define({
      ...passwordWriteBack,
      run: (job) => sync.writeBackPassword(job),
      // A write-back that failed for good will not send the password again: it must not wait in the database for it.
      onGiveUp: (job) => api.members.releasePendingPassword(job.params.member_id, 'keap', job.id),
    });
    // In the transaction of every password change, wherever it was asked for: the write to Keap is queued with it.
    api.onStop(api.members.onPasswordChange((change) => sync.queuePasswordWrite(change)));
  },
};
