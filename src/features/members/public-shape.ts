import type { Member } from './types.js';

/**
 * A member as programs outside memberhook see it: the JSON API's `user` and the `member` of outbound webhook events.
 * One shape for both, in the API's snake_case, so a receiver that also reads the API parses one thing. The plugin
 * API's `Member` (camelCase, with `roleIsAdmin` and `blocked`) stays inside the process.
 */
export interface PublicMember {
  id: number;
  email: string;
  username: string;
  role: string;
  first_name: string;
  last_name: string;
  keap_contact_id: number | null;
  tags: Array<{ id: number; name: string; category: string }>;
  fields: Record<string, unknown>;
  created_at: string;
  updated_at: string;
}

export function publicMember(m: Member): PublicMember {
  return {
    id: m.id,
    email: m.email,
    username: m.username,
    role: m.role,
    first_name: m.firstName,
    last_name: m.lastName,
    keap_contact_id: m.keapContactId,
    tags: m.tags.map((t) => ({ id: t.id, name: t.name, category: t.category })),
    fields: m.fields,
    created_at: m.createdAt,
    updated_at: m.updatedAt,
  };
}
