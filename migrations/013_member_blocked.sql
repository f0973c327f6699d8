-- A member can be blocked (by the admin, or because its Keap contact was deleted): it cannot log in and its sessions
-- are ended, but it keeps its data and can be unblocked. NULL: not blocked.
ALTER TABLE members ADD COLUMN blocked_at TEXT;
ALTER TABLE members ADD COLUMN blocked_reason TEXT;
