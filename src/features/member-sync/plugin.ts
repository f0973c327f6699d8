import type { CorePlugin } from '../../plugins/types.js';
import { passwordWriteBack } from './jobs.js';
import { KeapMemberSync } from './service.js';

/**
 * Keap contacts into members: the `add`, `update` and `update_tags` HTTP Post actions (registered like any plugin's)
 * and the password write-back to Keap's field.
 */
export const memberSyncPlugin: CorePlugin = {
  name: 'member-sync',
  description: 'Turns Keap contacts into members: the add, update and update_tags actions, and the password write-back.',
  setup(api) {
    const sync = new KeapMemberSync({ keap: api.keap, members: api.members, jobs: api.kernel.jobs, hooks: api.kernel.hooks, site: api.siteSettings });
    api.webhooks.addAction('add', (job) => sync.add(job));
    api.webhooks.addAction('update', (job) => sync.update(job));
    api.webhooks.addAction('update_tags', (job) => sync.updateTags(job));
    api.jobs.define({
      ...passwordWriteBack,
      run: (job) => sync.writeBackPassword(job),
      // A write-back that failed for good will not send the password again: it must not wait in the database for it.
      onGiveUp: (job) => api.members.releasePendingPassword(job.params.member_id, 'keap'),
    });
  },
};
