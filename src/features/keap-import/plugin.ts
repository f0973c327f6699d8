import type { CorePlugin } from '../../plugins/types.js';
import { IMPORT_PATH, keapImportAdminRoutes } from './admin-routes.js';
import { KeapImporter, keapImportBatch } from './importer.js';
import { KeapImportStore } from './store.js';

/**
 * Members → Import from Keap: every contact with a tag (or every contact) made a member, in resumable batches within
 * Keap's rate limits, with a progress page and a summary of what became of each contact.
 */
export const keapImportPlugin: CorePlugin = {
  name: 'keap-import',
  description: 'Imports Keap contacts as members in bulk: by tag or all, resumable, within Keap\'s rate limits, with progress and a summary.',
  setup(api) {
    const { kernel } = api;
    const store = new KeapImportStore(kernel.db);
    const importer = new KeapImporter({
      keap: api.keap,
      members: api.members,
      memberSync: api.memberSync,
      jobs: kernel.jobs,
      store,
      clock: kernel.clock,
      logger: kernel.logger,
      passwordField: () => api.siteSettings.passwordField(),
    });
    api.jobs.define({ ...keapImportBatch, run: (job) => importer.runBatch(job), onGiveUp: (job) => importer.giveUp(job) });
    api.admin.addPage({
      path: IMPORT_PATH.replace(/^\/admin\//, ''),
      title: 'Import from Keap',
      menu: { label: 'Import from Keap', order: 10, parent: 'members' },
      handler: keapImportAdminRoutes({
        admin: api.admin,
        keap: api.keap,
        members: api.members,
        store,
        jobs: kernel.jobs,
        clock: kernel.clock,
        logger: kernel.logger,
        defaultRole: () => api.siteSettings.defaultRole(),
        forget: (id) => importer.forget(id),
      }),
    });
  },
};
