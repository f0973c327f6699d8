import Handlebars from 'handlebars';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's views folder; the same relative path works from src/core and dist/core. */
export const VIEWS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'views');

export interface RenderOptions {
  /** Layout name under views/layouts, or false for none. Defaults to `main`. */
  layout?: string | false;
  [key: string]: unknown;
}

export interface CompileOptions {
  /**
   * Output `{{ }}` values as they are, without HTML escaping: for plain-text emails and subject lines, where
   * `&amp;` would be wrong. Never for HTML.
   */
  noEscape?: boolean;
}

/**
 * Handlebars views with layouts and partials, compiled once and cached. Handlebars escapes `{{ }}` output, so
 * anything from Keap or a member is safe in a page; `{{{ }}}` is kept for the layout's body. Only the repository's
 * own views: templates an admin edits render in a sandbox of their own (welcome-email/template.ts).
 */
export class ViewRenderer {
  private readonly hbs = Handlebars.create();
  private readonly cache = new Map<string, Handlebars.TemplateDelegate>();

  constructor(private readonly dir: string = VIEWS_DIR) {
    const partials = join(dir, 'partials');
    if (existsSync(partials)) {
      for (const file of readdirSync(partials, { recursive: true, encoding: 'utf8' })) {
        if (!file.endsWith('.hbs')) continue;
        const name = relative(partials, join(partials, file)).replace(/\.hbs$/, '');
        this.hbs.registerPartial(name, readFileSync(join(partials, file), 'utf8'));
      }
    }
    this.hbs.registerHelper('eq', (a: unknown, b: unknown) => a === b);
  }

  /** Renders `views/<name>.hbs` inside its layout. */
  render(name: string, data: RenderOptions = {}, options: CompileOptions = {}): string {
    const body = this.template(name, options)(data);
    if (data.layout === false) return body;
    return this.template(`layouts/${data.layout ?? 'main'}`, options)({ ...data, body });
  }

  private template(name: string, options: CompileOptions = {}): Handlebars.TemplateDelegate {
    const key = options.noEscape ? `${name}\0noEscape` : name;
    let compiled = this.cache.get(key);
    if (!compiled) {
      const source = readFileSync(join(this.dir, `${name}.hbs`), 'utf8');
      compiled = this.hbs.compile(source, options.noEscape ? { noEscape: true } : undefined);
      this.cache.set(key, compiled);
    }
    return compiled;
  }
}
