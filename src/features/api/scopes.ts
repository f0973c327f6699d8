/**
 * What a JSON API token may do. Each scope includes the ones before it. The API_TOKEN variable is the operator's own
 * token and holds `admin`; tokens made in the admin hold the scope chosen there (read-only unless changed).
 */
export const API_SCOPES = ['read', 'members:write', 'admin'] as const;
export type ApiScope = (typeof API_SCOPES)[number];

/** The scope new tokens get unless the administrator picks another: the narrowest, so more is always a choice. */
export const DEFAULT_API_SCOPE: ApiScope = 'read';

/** What each scope allows, in words (the admin's token form, the OpenAPI document). */
export const API_SCOPE_DESCRIPTIONS: Record<ApiScope, string> = {
  read: 'List and read users and events; change nothing.',
  'members:write': 'Read, plus change and delete members who are not administrators (their details, role and password) and replay events. Cannot give admin rights or touch an administrator.',
  admin: 'Everything, administrators included: give or take admin rights, change or delete an administrator, set an administrator\'s password.',
};

export function isApiScope(value: unknown): value is ApiScope {
  return typeof value === 'string' && (API_SCOPES as readonly string[]).includes(value);
}

/** Whether a token holding `held` may do what needs `needed`. */
export function scopeAllows(held: ApiScope, needed: ApiScope): boolean {
  return API_SCOPES.indexOf(held) >= API_SCOPES.indexOf(needed);
}
