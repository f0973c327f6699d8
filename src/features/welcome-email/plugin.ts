import type { CorePlugin } from '../../plugins/types.js';
import { welcomeEmail } from './jobs.js';
import { WelcomeSender } from './sender.js';

/** The welcome email a new member gets: username, the generated password when there is one, the login link. */
export const welcomeEmailPlugin: CorePlugin = {
  name: 'welcome-email',
  description: 'Sends new members their welcome email (the template is edited in Settings, Site, members & emails).',
  setup(api) {
    const site = api.siteSettings;
    const sender = new WelcomeSender({ kernel: api.kernel, members: api.members, template: () => site.welcomeTemplate() });
    api.jobs.define({
      ...welcomeEmail,
      run: (job) => sender.run(job),
      // An email that failed for good will not carry the password: it must not wait in the database for it.
      onGiveUp: (job) => api.members.releasePendingPassword(job.params.member_id, 'email'),
    });
  },
};
