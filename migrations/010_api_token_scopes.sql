-- What each JSON API token may do (see src/features/api/scopes.ts): `read` (GET only), `members:write` (change and
-- delete members who are not administrators, replay events), `admin` (everything: administrators, admin roles).
-- The column's default is the narrowest scope, so a row written without one can only read.
ALTER TABLE api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'read' CHECK (scope IN ('read', 'members:write', 'admin'));

-- Tokens made before scopes could do everything. They get `members:write`: scripts keep doing what tokens are made
-- for (reading, keeping members' details and roles in step, replaying events), while none of them can any longer
-- make a member an administrator, change an administrator or set an administrator's password, which nobody chose
-- to allow when these tokens were created. A script that did manage administrators now gets a 403 naming `admin`,
-- and an administrator gives it a new token with that scope.
UPDATE api_tokens SET scope = 'members:write';
