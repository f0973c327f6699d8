import type { CorePlugin } from '../../plugins/types.js';
import { roleAdminRoutes } from './admin-routes.js';

/** The Roles admin page: add, rename, delete, and which roles a Keap post may assign. */
export const rolesPlugin: CorePlugin = {
  name: 'roles',
  description: 'The Roles admin page: add, rename, delete roles, and which of them Keap posts may assign.',
  setup(api) {
    const handler = roleAdminRoutes({
      get roles() {
        return api.roles;
      },
      defaultRole: () => api.siteSettings.defaultRole(),
      logger: api.kernel.logger,
      admin: api.admin,
    });
    api.admin.addPage({ path: 'roles', title: 'Roles', menu: { label: 'Roles', order: 50 }, handler });
  },
};
