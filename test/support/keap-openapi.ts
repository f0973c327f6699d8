/**
 * Checks requests and responses against Keap's own API descriptions (keap-rest-v1.openapi.json, OpenAPI 3.0;
 * keap-rest-v2.openapi.yml, OpenAPI 3.1), so neither the Keap client nor the sandbox can drift from Keap's shapes.
 *
 * Stricter than the files in one way, on purpose: objects whose schema lists `properties` are closed (unknown
 * properties are errors), because a misspelt property (`customFields`, `tagIds`) is exactly the bug this exists to
 * catch. Pass `{ allowUnknownProperties: true }` to check against the files as written.
 *
 * Adjustments for known quirks of the files (nothing else is loosened):
 * - v1 types a custom field value's `content` as a bare `object`; Keap stores strings, numbers and dates there, so
 *   `content` accepts any JSON value.
 * - v1's PATCH /v1/contacts/{contactId} puts its `update_mask` enum on the array instead of its items; it is moved
 *   to the items, where it means something.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { parse as parseYaml } from 'yaml';

type Json = unknown;
type JsonObject = Record<string, unknown>;
type Version = 'v1' | 'v2';

export interface KeapSpecOptions {
  /** Check against the files as written (open objects). Default false: unknown properties are errors. */
  allowUnknownProperties?: boolean;
}

export interface KeapRequestLike {
  method: string;
  /** A path (`/crm/rest/v2/contacts/101`, a query string allowed) or a full URL; anything before `/rest/` is ignored. */
  path: string;
  query?: Record<string, string | string[] | undefined>;
  /** The parsed JSON body, or undefined for none. */
  body?: unknown;
}

export interface KeapOperationMatch {
  version: Version;
  method: string;
  /** The templated path as the spec writes it, e.g. `/rest/v2/contacts/{contact_id}`. */
  specPath: string;
  operationId: string | undefined;
  pathParams: Record<string, string>;
}

interface Operation {
  version: Version;
  method: string;
  specPath: string;
  regex: RegExp;
  paramNames: string[];
  literalSegments: number;
  op: JsonObject;
}

const SPEC_FILES: Record<Version, string> = { v1: 'keap-rest-v1.openapi.json', v2: 'keap-rest-v2.openapi.yml' };
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];

// ---------------------------------------------------------------------------------------------------------------
// Public API

/** The spec operation a method and path belong to; throws when neither spec has one. */
export function findKeapOperation(method: string, path: string): KeapOperationMatch {
  const { op, pathParams } = matchOperation(method, path);
  return { version: op.version, method: op.method, specPath: op.specPath, operationId: stringOr(op.op.operationId), pathParams };
}

/** Problems with a request (path parameters, query parameters, JSON body); [] when it matches the spec. */
export function validateKeapRequest(req: KeapRequestLike, options: KeapSpecOptions = {}): string[] {
  const { op, pathParams } = matchOperation(req.method, req.path);
  const spec = loadSpec(op.version, options);
  const label = describe(op);
  const errors: string[] = [];
  const query = mergedQuery(req.path, req.query);
  const params = (Array.isArray(op.op.parameters) ? op.op.parameters : []) as JsonObject[];

  for (const param of params) {
    const name = String(param.name);
    const schema = (param.schema ?? {}) as JsonObject;
    if (param.in === 'path') {
      const raw = pathParams[name];
      if (raw === undefined) continue;
      errors.push(...spec.check(schema, coerceParam(schema, [raw]), `path parameter ${name}`));
    } else if (param.in === 'query') {
      const raw = query[name];
      if (raw === undefined) {
        if (param.required === true) errors.push(`query parameter ${name} is required`);
        continue;
      }
      if (schema.type !== 'array' && raw.length > 1) {
        errors.push(`query parameter ${name} is given ${raw.length} times but takes one value`);
        continue;
      }
      errors.push(...spec.check(schema, coerceParam(schema, raw), `query parameter ${name}`));
    }
  }
  const known = new Set(params.filter((p) => p.in === 'query').map((p) => String(p.name)));
  for (const name of Object.keys(query)) {
    if (!known.has(name)) errors.push(`query parameter ${name} is not a parameter of this operation (known: ${[...known].join(', ') || 'none'})`);
  }

  const requestBody = op.op.requestBody as JsonObject | undefined;
  if (req.body !== undefined) {
    const schema = jsonSchemaOf(requestBody);
    if (!requestBody) errors.push(`${label} takes no request body`);
    else if (!schema) errors.push(`${label} takes no JSON request body`);
    else errors.push(...spec.check(schema, req.body, 'request body'));
  } else if (requestBody?.required === true) {
    errors.push(`${label} requires a request body`);
  }
  return errors.map((e) => `${label}: ${e}`);
}

/** Problems with a response (documented status, body shape); [] when it matches the spec. */
export function validateKeapResponse(req: Pick<KeapRequestLike, 'method' | 'path'>, status: number, body: unknown, options: KeapSpecOptions = {}): string[] {
  const { op } = matchOperation(req.method, req.path);
  const spec = loadSpec(op.version, options);
  const label = describe(op);
  const responses = (op.op.responses ?? {}) as Record<string, JsonObject>;
  const response = responses[String(status)] ?? responses[`${String(status).charAt(0)}XX`] ?? responses.default;
  if (!response) {
    return [`${label}: status ${status} is not a documented response (documented: ${Object.keys(responses).join(', ')})`];
  }
  const schema = jsonSchemaOf(response);
  if (!schema) {
    return body === undefined || body === '' ? [] : [`${label}: status ${status} has no JSON body in the spec, but one was sent`];
  }
  if (body === undefined) return [`${label}: status ${status} should have a JSON body`];
  return spec.check(schema, body, 'response body').map((e) => `${label} ${status}: ${e}`);
}

/** Throws an AssertionError listing every problem when the response does not match the spec. */
export function assertMatchesKeapSpec(req: Pick<KeapRequestLike, 'method' | 'path'>, status: number, body: unknown, options: KeapSpecOptions = {}): void {
  const errors = validateKeapResponse(req, status, body, options);
  assert.deepEqual(errors, [], `response does not match Keap's spec:\n  ${errors.join('\n  ')}\nbody: ${preview(body)}`);
}

/** Throws an AssertionError listing every problem when the request does not match the spec. */
export function assertKeapRequestMatchesSpec(req: KeapRequestLike, options: KeapSpecOptions = {}): void {
  const errors = validateKeapRequest(req, options);
  assert.deepEqual(errors, [], `request does not match Keap's spec:\n  ${errors.join('\n  ')}`);
}

/**
 * Reads a fetch Response's JSON body (undefined when empty), asserts it matches the spec for `method` and the
 * response's URL, and returns it.
 */
export async function readKeapJson(res: Response, method = 'GET', options: KeapSpecOptions = {}): Promise<unknown> {
  const text = await res.text();
  const body: unknown = text === '' ? undefined : JSON.parse(text);
  assertMatchesKeapSpec({ method, path: res.url }, res.status, body, options);
  return body;
}

// ---------------------------------------------------------------------------------------------------------------
// Loading and compiling the specs

interface LoadedSpec {
  check(schema: JsonObject, value: Json, where: string): string[];
}

const rawDocs = new Map<Version, JsonObject>();
const loaded = new Map<string, LoadedSpec>();
let operations: Operation[] | undefined;

function specDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [process.env.KEAP_SPEC_DIR, join(here, '../../spec'), join(here, '../../../shared/keap')].filter((d): d is string => !!d);
  const found = candidates.find((dir) => existsSync(join(dir, SPEC_FILES.v1)) && existsSync(join(dir, SPEC_FILES.v2)));
  if (!found) throw new Error(`Keap spec files not found; looked in ${candidates.map((c) => resolve(c)).join(', ')} (set KEAP_SPEC_DIR)`);
  return found;
}

function rawDoc(version: Version): JsonObject {
  let doc = rawDocs.get(version);
  if (!doc) {
    const text = readFileSync(join(specDir(), SPEC_FILES[version]), 'utf8');
    doc = (version === 'v1' ? JSON.parse(text) : parseYaml(text, { maxAliasCount: -1 })) as JsonObject;
    rawDocs.set(version, doc);
  }
  return doc;
}

function loadSpec(version: Version, options: KeapSpecOptions): LoadedSpec {
  const closed = options.allowUnknownProperties !== true;
  const key = `${version}:${closed ? 'closed' : 'open'}`;
  const existing = loaded.get(key);
  if (existing) return existing;

  const base = `https://keap-spec.invalid/${version}/${closed ? 'closed' : 'open'}/schemas/`;
  // verbose: errors carry the offending value, so a message can say what was sent.
  const ajvOptions = { strict: false, allErrors: true, validateSchema: false, verbose: true } as const;
  // v1 is OpenAPI 3.0 (a JSON Schema draft-04/07 dialect); v2 is OpenAPI 3.1, which is JSON Schema 2020-12.
  const ajv = version === 'v1' ? new Ajv(ajvOptions) : new Ajv2020(ajvOptions);
  addFormatsModule.default(ajv);
  const prepare = (schema: Json) => prepareSchema(schema, base, closed);
  const components = ((rawDoc(version).components as JsonObject | undefined)?.schemas ?? {}) as JsonObject;
  for (const [name, schema] of Object.entries(components)) ajv.addSchema(prepare(schema) as JsonObject, `${base}${name}`);

  const compiled = new WeakMap<JsonObject, ValidateFunction>();
  const spec: LoadedSpec = {
    check(schema, value, where) {
      let validate = compiled.get(schema);
      if (!validate) {
        validate = ajv.compile(prepare(schema) as JsonObject);
        compiled.set(schema, validate);
      }
      return validate(value) ? [] : formatErrors(validate.errors ?? [], where);
    },
  };
  loaded.set(key, spec);
  return spec;
}

/**
 * A copy of a schema ready for ajv: component refs made absolute, the quirks above fixed, objects closed. Walks
 * schema keywords only, so a property that happens to be called `type` or `enum` is never mistaken for one.
 */
function prepareSchema(node: Json, base: string, closed: boolean): Json {
  if (typeof node !== 'object' || node === null || Array.isArray(node)) return node;
  const src = node as JsonObject;
  const out: JsonObject = { ...src };
  if (typeof src.$ref === 'string' && src.$ref.startsWith('#/components/schemas/')) {
    out.$ref = `${base}${src.$ref.slice('#/components/schemas/'.length)}`;
  }
  const sub = (s: Json) => prepareSchema(s, base, closed);
  if (src.properties && typeof src.properties === 'object') {
    const props: JsonObject = {};
    for (const [name, schema] of Object.entries(src.properties as JsonObject)) props[name] = sub(schema);
    // Quirk: v1's CustomFieldValue.content is `type: object` but holds any value.
    const content = props.content as JsonObject | undefined;
    if (content && content.type === 'object' && !content.properties && 'id' in props) {
      const { type: _type, ...rest } = content;
      props.content = rest;
    }
    out.properties = props;
    if (closed && out.additionalProperties === undefined && out.patternProperties === undefined) out.additionalProperties = false;
  }
  if (Array.isArray(src.items)) out.items = src.items.map(sub);
  else if (src.items !== undefined) out.items = sub(src.items);
  // Quirk: an enum on an array schema whose items have none belongs to the items.
  if (src.type === 'array' && Array.isArray(src.enum) && out.items && typeof out.items === 'object' && !Array.isArray(out.items) && !(out.items as JsonObject).enum) {
    out.items = { ...(out.items as JsonObject), enum: src.enum };
    delete out.enum;
  }
  if (src.additionalProperties && typeof src.additionalProperties === 'object') out.additionalProperties = sub(src.additionalProperties);
  for (const key of ['allOf', 'anyOf', 'oneOf', 'prefixItems'] as const) {
    if (Array.isArray(src[key])) out[key] = (src[key] as Json[]).map(sub);
  }
  for (const key of ['not', 'contains', 'if', 'then', 'else'] as const) {
    if (src[key] !== undefined) out[key] = sub(src[key]);
  }
  return out;
}

function formatErrors(errors: ErrorObject[], where: string): string[] {
  const lines = errors.map((e) => {
    const at = `${where}${e.instancePath}`;
    const params = e.params as Record<string, unknown>;
    if (e.keyword === 'additionalProperties') return `${at} has unknown property "${String(params.additionalProperty)}"`;
    const got = `(got ${preview(e.data)})`;
    if (e.keyword === 'enum') {
      const allowed = params.allowedValues as unknown[];
      const list = allowed.length <= 8 ? allowed.map((v) => JSON.stringify(v)).join(', ') : `the ${allowed.length} values the spec lists`;
      return `${at} must be one of ${list} ${got}`;
    }
    if (e.keyword === 'type' || e.keyword === 'format') return `${at} ${e.message ?? 'is invalid'} ${got}`;
    return `${at} ${e.message ?? 'is invalid'}`;
  });
  return [...new Set(lines)];
}

// ---------------------------------------------------------------------------------------------------------------
// Matching a request to an operation

function allOperations(): Operation[] {
  if (operations) return operations;
  const list: Operation[] = [];
  for (const version of ['v1', 'v2'] as const) {
    const paths = (rawDoc(version).paths ?? {}) as Record<string, JsonObject>;
    for (const [specPath, item] of Object.entries(paths)) {
      const paramNames: string[] = [];
      const segments = specPath.split('/').filter(Boolean);
      const pattern = segments
        .map((segment) =>
          segment
            .split(/(\{[^}]+\})/)
            .map((part) => {
              const name = /^\{([^}]+)\}$/.exec(part)?.[1];
              if (name === undefined) return escapeRegex(part);
              paramNames.push(name);
              return '([^/]+)';
            })
            .join(''),
        )
        .join('/');
      const regex = new RegExp(`^/${pattern}$`);
      const literalSegments = segments.filter((s) => !s.includes('{')).length;
      for (const method of METHODS) {
        const op = item[method];
        if (op && typeof op === 'object') list.push({ version, method: method.toUpperCase(), specPath, regex, paramNames, literalSegments, op: op as JsonObject });
      }
    }
  }
  operations = list;
  return list;
}

function matchOperation(method: string, path: string): { op: Operation; pathParams: Record<string, string> } {
  const pathname = specRelativePath(path);
  const upper = method.toUpperCase();
  const candidates = allOperations()
    .filter((op) => op.method === upper && op.regex.test(pathname))
    // A literal segment beats a template: /contacts/model is the model, not a contact with id "model".
    .sort((a, b) => b.literalSegments - a.literalSegments);
  const op = candidates[0];
  if (!op) throw new Error(`No operation in Keap's specs matches ${upper} ${path}`);
  const match = op.regex.exec(pathname);
  const pathParams: Record<string, string> = {};
  op.paramNames.forEach((name, i) => {
    pathParams[name] = decodeURIComponent(match?.[i + 1] ?? '');
  });
  return { op, pathParams };
}

/** `/crm/rest/v1/contacts/?x` → `/v1/contacts` (v1 paths start at /v1), `/crm/rest/v2/...` → `/rest/v2/...`. */
function specRelativePath(path: string): string {
  let pathname = new URL(path, 'http://keap.invalid').pathname;
  if (pathname.length > 1 && pathname.endsWith('/')) pathname = pathname.slice(0, -1);
  const at = pathname.indexOf('/rest/');
  if (at < 0) throw new Error(`Not a Keap REST path (no /rest/ in it): ${path}`);
  const rest = pathname.slice(at);
  return rest.startsWith('/rest/v1/') ? rest.slice('/rest'.length) : rest;
}

function mergedQuery(path: string, query: KeapRequestLike['query']): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  const add = (key: string, value: string) => (out[key] ??= []).push(value);
  for (const [key, value] of new URL(path, 'http://keap.invalid').searchParams) add(key, value);
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) add(key, v);
  }
  return out;
}

/**
 * Query and path values arrive as strings; they are turned into what the parameter's schema types them as. An
 * array parameter is accepted comma-separated and repeated alike (clients and Keap both use either).
 */
function coerceParam(schema: JsonObject, raw: string[]): Json {
  if (schema.type === 'array') {
    const itemType = ((schema.items ?? {}) as JsonObject).type;
    return raw.flatMap((v) => v.split(',')).map((v) => coerceScalar(itemType, v));
  }
  return coerceScalar(schema.type, raw[0] ?? '');
}

function coerceScalar(type: unknown, raw: string): Json {
  if ((type === 'integer' || type === 'number') && /^-?\d+(\.\d+)?$/.test(raw)) return Number(raw);
  if (type === 'boolean' && (raw === 'true' || raw === 'false')) return raw === 'true';
  return raw;
}

function jsonSchemaOf(holder: JsonObject | undefined): JsonObject | undefined {
  const content = holder?.content as Record<string, JsonObject> | undefined;
  const json = content?.['application/json'] ?? content?.['application/json;charset=UTF-8'];
  return json?.schema as JsonObject | undefined;
}

function describe(op: Operation): string {
  const id = stringOr(op.op.operationId);
  return `${op.method} ${op.specPath}${id ? ` (${id})` : ''}`;
}

function stringOr(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function preview(body: unknown): string {
  const text = JSON.stringify(body);
  return text === undefined ? 'undefined' : text.length > 600 ? `${text.slice(0, 600)}...` : text;
}
