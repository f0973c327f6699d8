-- Searching members by email domain ("@example.com", "example.com"): an index on the part after the '@', so the
-- search is a range of it rather than a scan of every email. Queries must spell the expression exactly as here
-- (EMAIL_DOMAIN_SQL in src/features/members/search.ts) for SQLite to use it.
CREATE INDEX members_email_domain ON members (substr(email, instr(email, '@') + 1) COLLATE NOCASE);
