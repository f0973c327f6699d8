import { SandboxState } from './state.js';

/** Ids of the seeded records, so tests name them instead of repeating magic numbers. */
export const SEED = {
  fields: { password: 12, username: 14, favoriteColor: 16, memberSince: 18 },
  categories: { membership: { id: 10, name: 'Membership' }, billing: { id: 11, name: 'Billing' } },
  tags: { member: 91, vip: 93, paymentFailed: 95, newsletter: 97 },
  contacts: {
    /** Two emails, three tags, a favourite colour. */
    ada: 101,
    /** Has the Username field set. */
    grace: 102,
    /** Has the Password field set. */
    alan: 103,
    /** No email address at all: what a member sync must refuse. */
    noEmail: 104,
    /** Only given name and email, nothing else. */
    margaret: 105,
  },
} as const;

const HOUR = 3_600_000;

/**
 * A small account in the shape a real one has: a few contacts changed at different times (not in id order, so a
 * `since` listing proves it orders by last_updated), tags in categories, and the custom fields a member site maps.
 */
export function seedSandboxState(state: SandboxState, now: number): void {
  const at = (hoursAgo: number) => new Date(now - hoursAgo * HOUR).toISOString();
  const { fields, categories, tags, contacts } = SEED;

  state.addCustomField({ id: fields.password, label: 'Password', field_name: 'Password0' });
  state.addCustomField({ id: fields.username, label: 'Username', field_name: 'Username1' });
  state.addCustomField({ id: fields.favoriteColor, label: 'Favorite Color', field_name: 'FavoriteColor2' });
  state.addCustomField({ id: fields.memberSince, label: 'Member Since', field_name: 'MemberSince3', field_type: 'DATE' });

  state.addTag({ id: tags.member, name: 'Member', description: 'Has site access', category: categories.membership, create_time: at(24 * 90) });
  state.addTag({ id: tags.vip, name: 'VIP', category: categories.membership, create_time: at(24 * 90) });
  state.addTag({ id: tags.paymentFailed, name: 'Payment Failed', category: categories.billing, create_time: at(24 * 60) });
  state.addTag({ id: tags.newsletter, name: 'Newsletter', create_time: at(24 * 60) });

  state.addContact({
    id: contacts.ada,
    given_name: 'Ada',
    family_name: 'Lovelace',
    email_addresses: [
      { email: 'ada@example.com', field: 'EMAIL1' },
      { email: 'ada.lovelace@example.org', field: 'EMAIL2' },
    ],
    custom_fields: { [fields.favoriteColor]: 'Purple', [fields.memberSince]: '2024-01-15' },
    tag_ids: [tags.member, tags.vip, tags.newsletter],
    date_created: at(24 * 30),
    last_updated: at(30),
  });
  state.addContact({
    id: contacts.grace,
    given_name: 'Grace',
    family_name: 'Hopper',
    email: 'grace@example.com',
    custom_fields: { [fields.username]: 'ghopper' },
    tag_ids: [tags.member],
    date_created: at(24 * 20),
    last_updated: at(6),
  });
  state.addContact({
    id: contacts.alan,
    given_name: 'Alan',
    family_name: 'Turing',
    email: 'alan@example.com',
    custom_fields: { [fields.password]: 'Enigma-1912' },
    tag_ids: [tags.member, tags.paymentFailed],
    date_created: at(24 * 10),
    last_updated: at(48),
  });
  state.addContact({
    id: contacts.noEmail,
    given_name: 'Nobody',
    family_name: 'Noemail',
    tag_ids: [tags.newsletter],
    date_created: at(24 * 5),
    last_updated: at(12),
  });
  state.addContact({
    id: contacts.margaret,
    given_name: 'Margaret',
    email: 'margaret@example.com',
    date_created: at(24 * 2),
    last_updated: at(2),
  });
}
