// An example memberhook plugin in one file: a filter that makes usernames from names.
// New members from Keap get "ada.lovelace" instead of their email address as username. memberhook falls back to
// the email when the result is empty or taken, so two Ada Lovelaces never clash.
import { definePlugin, z } from 'memberhook/plugin';

export default definePlugin({
  name: 'username-from-name',
  version: '1.0.0',
  apiVersion: 1,
  description: 'New members get a username made of their first and last name (ada.lovelace) instead of their email.',

  setup(api) {
    const settings = api.settings.define(
      z.object({
        separator: z.enum(['.', '-', '_', '']).describe('What goes between the first and the last name.'),
        lowercase: z.boolean().describe('Write the username in lowercase.'),
      }),
      { separator: '.', lowercase: true },
    );

    api.hooks.addFilter('member.username', (username, contact) => {
      const { separator, lowercase } = settings.get();
      // Letters and digits only (accents dropped: "Zoë" becomes "zoe"), so the username is easy to type.
      const clean = (part) => part.normalize('NFKD').replace(/[^A-Za-z0-9]/g, '');
      const parts = [contact.givenName, contact.familyName].map(clean).filter(Boolean);
      if (parts.length === 0) return username;
      const name = parts.join(separator);
      return lowercase ? name.toLowerCase() : name;
    });
  },
});
