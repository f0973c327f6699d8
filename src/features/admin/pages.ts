import type { Response } from 'express';
import { SITE_NAME } from '../../app.js';
import type { AppContext } from '../../context.js';

/** The admin top bar's sections; `section` in a page's data marks the current one. */
export const ADMIN_NAV = [
  { section: 'dashboard', label: 'Dashboard', href: '/admin' },
  { section: 'members', label: 'Members', href: '/admin/members' },
  { section: 'events', label: 'Events', href: '/admin/events' },
  { section: 'settings', label: 'Settings', href: '/admin/settings' },
  { section: 'roles', label: 'Roles', href: '/admin/roles' },
] as const;

export type AdminSection = (typeof ADMIN_NAV)[number]['section'];

export interface AdminPageData {
  title: string;
  /** The top bar's current section. */
  section?: AdminSection;
  /** No navigation or account in the top bar: setup, login and the no-rights page. */
  bare?: boolean;
  [key: string]: unknown;
}

/**
 * Renders `views/admin/<view>.hbs` in the admin layout, with the form token, the site name, the navigation and the
 * administrator (when `requireAdmin` has set one). Every admin page goes through this.
 */
export function renderAdmin(ctx: AppContext, res: Response, status: number, view: string, data: AdminPageData): void {
  const admin = data.bare ? undefined : res.locals.admin;
  const nav = ADMIN_NAV.map((item) => ({ ...item, current: item.section === data.section }));
  res
    .status(status)
    .type('html')
    .send(
      ctx.views.render(`admin/${view}`, {
        layout: 'admin',
        siteName: SITE_NAME,
        csrfToken: res.locals.csrfToken,
        member: res.locals.member,
        ...data,
        admin,
        nav: admin ? nav : undefined,
      }),
    );
}
