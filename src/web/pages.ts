import type { NextFunction, Request, Response, Router } from 'express';

/** What the admin shell takes from the plugins that register pages, and what it hands them. */

/** Text that is already HTML: `api.admin.html` makes it, escaping every value put into it. */
export interface SafeHtml {
  readonly __html: string;
  toString(): string;
}

export interface AdminPage {
  /** Under `/admin/plugins/<plugin>/` (built-ins: under `/admin/`); '' for the plugin's main page. */
  path: string;
  title: string;
  /**
   * A link in the admin's top navigation (default for plugin pages: none; the plugins page links to them), or with
   * `parent` a tab among that page's tabs (`parent: 'settings'` adds a Settings tab). Lower `order` comes first.
   */
  menu?: { label?: string; order?: number; parent?: string } | false;
  /**
   * A function handles the page's own path, for every method; an express Router handles the path and everything
   * under it. The host has checked the admin's session and, on POST, the form's CSRF token; the form is parsed into
   * `req.body`.
   */
  handler: (req: Request, res: Response, next: NextFunction) => unknown;
}

export interface AdminGate {
  /** Runs on every admin request first: who is asking (sets `res.locals.admin` candidates). */
  identify: (req: Request, res: Response, next: NextFunction) => unknown;
  /** Pages that need no admin session: setup, login, logout. */
  publicRoutes: Router;
  /** Lets only administrators with an admin session through, with `res.locals.admin` set. */
  requireAdmin: (req: Request, res: Response, next: NextFunction) => unknown;
}

export interface AdminViewData {
  title: string;
  /** The current top-navigation entry (a page path registered with a menu). */
  section?: string;
  /** No navigation or account in the top bar: setup, login and the no-rights page. */
  bare?: boolean;
  [key: string]: unknown;
}
