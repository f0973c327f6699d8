import { Router, type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import Handlebars from 'handlebars';
import { csrfProtection } from '../core/csrf.js';
import { formBodyParser } from '../core/forms.js';
import type { Kernel } from '../core/kernel.js';
import type { AdminGate, AdminPage, AdminViewData, SafeHtml } from './pages.js';

/** The administrator using the admin pages, as the shell knows one (a member with admin rights). */
export interface AdminUser {
  id: number;
  email: string;
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Locals {
      /** The administrator using the admin pages, set by the gate's `requireAdmin`. */
      admin?: AdminUser;
    }
  }
}

export interface RegisteredPage {
  plugin: string;
  /** The full path under /admin, without slashes at either end ('' for /admin itself). */
  path: string;
  title: string;
  menu: { label: string; order: number; parent?: string } | undefined;
  handler: AdminPage['handler'];
}

interface NavEntry {
  label: string;
  href: string;
  current: boolean;
}

/**
 * The admin shell: `/admin`'s pipeline (no-store, form parsing, CSRF, the gate), the layout, and the navigation,
 * built from the pages plugins (built-ins among them) register. It knows nothing of members or any feature: the
 * gate that says who is an administrator is handed to it.
 */
export class AdminShell {
  private pages: RegisteredPage[] = [];
  private pagesRouter: Router = Router();
  private gate: AdminGate | undefined;

  constructor(private readonly kernel: Kernel) {}

  setGate(gate: AdminGate): void {
    this.gate = gate;
  }

  /** Adds a page (and its menu entry); returns the undo. `path` is the full path under /admin. */
  addPage(page: RegisteredPage): () => void {
    const clash = this.pages.find((p) => p.path === page.path);
    if (clash) throw new Error(`the admin page /admin/${page.path} is already registered by ${clash.plugin}`);
    this.pages = [...this.pages, page];
    this.rebuild();
    return () => {
      this.pages = this.pages.filter((p) => p !== page);
      this.rebuild();
    };
  }

  /** The `/admin` router. */
  router(): Router {
    const router = Router();
    // 64 KB: the welcome email's HTML template is the largest thing an admin form carries.
    const formBody = formBodyParser({ limit: '64kb', parameterLimit: 50 });
    const noStore: RequestHandler = (_req, res, next) => {
      // Admin pages carry members' data and form tokens: never kept by a cache or the back button.
      res.set('Cache-Control', 'no-store');
      next();
    };
    const gate = (pick: (g: AdminGate) => (req: Request, res: Response, next: NextFunction) => unknown): RequestHandler => (req, res, next) => {
      if (!this.gate) return next(new Error('no admin gate is set up'));
      return pick(this.gate)(req, res, next);
    };
    router.use(noStore, ...formBody, csrfProtection(this.kernel), gate((g) => g.identify), gate((g) => g.publicRoutes), gate((g) => g.requireAdmin));
    // Swapped whole when a page is added or removed, so enabling or disabling a plugin applies at once.
    router.use((req, res, next) => this.pagesRouter(req, res, next));
    return router;
  }

  /** Renders `views/admin/<view>.hbs` in the admin layout, with the navigation and the form token. */
  view(res: Response, status: number, view: string, data: AdminViewData): void {
    const admin = data.bare ? undefined : res.locals.admin;
    const { nav, tabs, tabsLabel } = admin ? this.navigation(res.req.originalUrl, data.section) : { nav: undefined, tabs: undefined, tabsLabel: undefined };
    res
      .status(status)
      .type('html')
      .send(
        this.kernel.views.render(`admin/${view}`, {
          layout: 'admin',
          siteName: this.kernel.identity.siteName(),
          csrfToken: res.locals.csrfToken,
          member: res.locals.member,
          tabs,
          tabsLabel,
          ...data,
          admin,
          nav,
        }),
      );
  }

  /** A plugin's page: its HTML inside the admin layout. */
  renderHtml(res: Response, page: { title: string; html: SafeHtml | string; status?: number }): void {
    this.view(res, page.status ?? 200, 'plugin-page', { title: page.title, html: String(page.html) });
  }

  /**
   * The top navigation (pages with a menu and no parent, by order) and the tabs of the current section (its pages
   * with a menu naming it as parent, after the section's own page). The current entries come from the URL: the
   * longest registered path the request is under.
   */
  private navigation(url: string, section: string | undefined) {
    const path = new URL(url, 'http://admin.invalid').pathname.replace(/^\/admin\/?/, '').replace(/\/+$/, '');
    const within = (p: string) => p === '' ? path === '' : path === p || path.startsWith(`${p}/`);
    const top = this.pages.filter((p) => p.menu && !p.menu.parent).sort((a, b) => a.menu!.order - b.menu!.order);
    const currentTop = section ?? top.filter((p) => within(p.path)).sort((a, b) => b.path.length - a.path.length)[0]?.path;
    const nav: NavEntry[] = top.map((p) => ({ label: p.menu!.label, href: hrefOf(p.path), current: p.path === currentTop }));
    const parent = this.pages.find((p) => p.path === currentTop);
    const children = this.pages.filter((p) => p.menu?.parent !== undefined && p.menu.parent === currentTop).sort((a, b) => a.menu!.order - b.menu!.order);
    if (!parent || children.length === 0) return { nav, tabs: undefined, tabsLabel: undefined };
    const tabPages = [parent, ...children];
    const currentTab = tabPages.filter((p) => within(p.path)).sort((a, b) => b.path.length - a.path.length)[0]?.path;
    const tabs: NavEntry[] = tabPages.map((p) => ({ label: p === parent ? p.title : (p.menu!.label), href: hrefOf(p.path), current: p.path === currentTab }));
    return { nav, tabs, tabsLabel: parent.menu?.label ?? parent.title };
  }

  private rebuild(): void {
    const router = Router();
    // Deeper paths first, so `settings/keap` is not taken by `settings`'s handler before its own. An express Router
    // handles its path and everything under it; a plain function, its own path only (any method).
    for (const page of [...this.pages].sort((a, b) => b.path.length - a.path.length)) {
      if (isRouter(page.handler)) router.use(`/${page.path}`, page.handler as RequestHandler);
      else router.all(`/${page.path}`, page.handler as RequestHandler);
    }
    this.pagesRouter = router;
  }
}

function isRouter(handler: unknown): boolean {
  return typeof handler === 'function' && Array.isArray((handler as { stack?: unknown }).stack);
}

function hrefOf(path: string): string {
  return path === '' ? '/admin' : `/admin/${path}`;
}

/** Escapes every value put into the template; a SafeHtml value goes in as it is. */
export function html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  let out = strings[0] ?? '';
  values.forEach((value, i) => {
    out += htmlValue(value) + (strings[i + 1] ?? '');
  });
  return safeHtml(out);
}

export function safeHtml(text: string): SafeHtml {
  return { __html: text, toString: () => text };
}

function htmlValue(value: unknown): string {
  if (Array.isArray(value)) return value.map(htmlValue).join('');
  if (value && typeof value === 'object' && '__html' in value) return String((value as SafeHtml).__html);
  if (value === undefined || value === null || value === false) return '';
  return Handlebars.escapeExpression(String(value));
}

/** The hidden form field carrying the CSRF token (set on every admin request by the shell's pipeline). */
export function csrfField(res: Response): SafeHtml {
  return html`<input type="hidden" name="_csrf" value="${res.locals.csrfToken ?? ''}">`;
}
