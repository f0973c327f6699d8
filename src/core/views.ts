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

/**
 * Handlebars views with layouts and partials, compiled once and cached. Handlebars escapes `{{ }}` output, so
 * anything from Keap or a member is safe in a page; `{{{ }}}` is kept for the layout's body.
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
  render(name: string, data: RenderOptions = {}): string {
    const body = this.template(name)(data);
    if (data.layout === false) return body;
    return this.template(`layouts/${data.layout ?? 'main'}`)({ ...data, body });
  }

  /** Compiles a template from a string (welcome email bodies edited in the admin). */
  compile(source: string): Handlebars.TemplateDelegate {
    return this.hbs.compile(source, { strict: false });
  }

  private template(name: string): Handlebars.TemplateDelegate {
    let compiled = this.cache.get(name);
    if (!compiled) {
      compiled = this.hbs.compile(readFileSync(join(this.dir, `${name}.hbs`), 'utf8'));
      this.cache.set(name, compiled);
    }
    return compiled;
  }
}
