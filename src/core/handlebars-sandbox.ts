import Handlebars from 'handlebars';

/**
 * A Handlebars environment for templates an administrator writes (emails, outbound webhook bodies): text, never
 * code. It holds only the helpers a kind of template may use, no partials and no decorators, compiles with
 * `knownHelpersOnly` (a template stored before a check, or written straight to the database, still cannot reach
 * another helper) and keeps Handlebars' refusal to read prototype properties (`{{constructor}}`, `__proto__`).
 */

/** A template calling what its kind cannot use, named, with its line; thrown before anything renders. */
export class TemplateNotAllowed extends Error {
  override name = 'TemplateNotAllowed';
  constructor(
    message: string,
    readonly lineNumber: number | undefined,
  ) {
    super(message);
  }
}

export interface SandboxSpec {
  /** How errors name the templates: "email templates". */
  kind: string;
  /** Handlebars' built-in helpers the templates may use (`if`, `unless`, `each`, ...). */
  builtIns: readonly string[];
  /** Helpers of this kind's own, added to the environment. */
  helpers?: Record<string, Handlebars.HelperDelegate>;
  /** How the refusal of a helper ends: what the templates can use, in words. */
  canUse: string;
}

export interface HandlebarsSandbox {
  /** Parses and checks `source` (throws TemplateNotAllowed), then compiles it in the sandbox. */
  compile(source: string, options?: { noEscape?: boolean }): Handlebars.TemplateDelegate;
}

/** Handlebars' own fallbacks, which its compiled code calls for a plain `{{#section}}` or a missing value. */
const INTERNAL_HELPERS = new Set(['helperMissing', 'blockHelperMissing']);
/** Every helper a fresh Handlebars has: a bare `{{log}}` calls one even without arguments. */
const HANDLEBARS_HELPERS = new Set(Object.keys(Handlebars.create().helpers));

interface HbsNode {
  type: string;
  loc?: { start: { line: number } };
  path?: { type: string; original?: unknown };
  params?: HbsNode[];
  hash?: { pairs: Array<{ value: HbsNode }> };
  program?: { body: HbsNode[] } | null;
  inverse?: { body: HbsNode[] } | null;
  body?: HbsNode[];
}

export function handlebarsSandbox(spec: SandboxSpec): HandlebarsSandbox {
  const allowed = new Set([...spec.builtIns, ...Object.keys(spec.helpers ?? {})]);
  const env = Handlebars.create();
  for (const name of Object.keys(env.helpers)) {
    if (!allowed.has(name) && !INTERNAL_HELPERS.has(name)) env.unregisterHelper(name);
  }
  for (const [name, helper] of Object.entries(spec.helpers ?? {})) env.registerHelper(name, helper);
  const compileOptions = { strict: false, knownHelpersOnly: true, knownHelpers: Object.fromEntries([...allowed].map((name) => [name, true])) };

  /** Walks the parsed template: a helper not allowed, a partial or a decorator is refused by name, with its line. */
  const refuse = (node: HbsNode): void => {
    const line = node.loc?.start.line;
    if (node.type === 'PartialStatement' || node.type === 'PartialBlockStatement') {
      throw new TemplateNotAllowed(`partials ({{> name}}) are not available in ${spec.kind}`, line);
    }
    if (node.type === 'Decorator' || node.type === 'DecoratorBlock') {
      throw new TemplateNotAllowed(`decorators ({{* name}}) are not available in ${spec.kind}`, line);
    }
    if (node.type === 'MustacheStatement' || node.type === 'BlockStatement' || node.type === 'SubExpression') {
      const name = node.path?.type === 'PathExpression' ? String(node.path.original) : undefined;
      const callsHelper = (node.params?.length ?? 0) > 0 || (node.hash?.pairs.length ?? 0) > 0 || (name !== undefined && HANDLEBARS_HELPERS.has(name));
      if (callsHelper && !allowed.has(name ?? '')) {
        throw new TemplateNotAllowed(`the helper "${name ?? String(node.path?.original)}" is not available in ${spec.kind} (${spec.canUse})`, line);
      }
    }
    const children = [
      ...(node.params ?? []),
      ...(node.hash?.pairs.map((pair) => pair.value) ?? []),
      node.path as HbsNode | undefined,
      ...(node.body ?? []),
      ...(node.program?.body ?? []),
      ...(node.inverse?.body ?? []),
    ];
    for (const child of children) if (child && typeof child === 'object' && 'type' in child) refuse(child);
  };

  return {
    compile(source, options = {}) {
      refuse(Handlebars.parse(source) as unknown as HbsNode);
      return env.compile(source, { ...compileOptions, ...(options.noEscape ? { noEscape: true } : {}) });
    },
  };
}
