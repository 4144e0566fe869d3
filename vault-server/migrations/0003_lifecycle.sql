-- The vault keeps its promises: retention tags per recovery point, soft-deleted items,
-- security PINs.

-- Retention tags of a point (`Daily,Weekly`, or `AdHoc`); its expiry is `expires_at`.
ALTER TABLE recovery_points ADD COLUMN rule_name TEXT NOT NULL DEFAULT '';

-- When the item's backup data was deleted under soft delete (purged `softDeleteRetention`
-- days later unless undeleted); NULL while it is not deleted.
ALTER TABLE protected_items ADD COLUMN deferred_delete_at INTEGER;

-- PINs from `POST …/backupSecurityPIN`: each allows one destructive operation until it
-- expires.
CREATE TABLE security_pins (
    vault_id        INTEGER NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
    pin             TEXT NOT NULL,
    expires_at      INTEGER NOT NULL,
    PRIMARY KEY (vault_id, pin)
);
