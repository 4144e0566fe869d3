-- The role assignments of one ARM plane (sim_core::rbac owns this table). Run by
-- `Roles::open` on every start; services whose first migration already created it (vault-server,
-- keyvault-sim: their migration files cannot change without breaking existing data
-- directories) find it there, and this is then a no-op.
CREATE TABLE IF NOT EXISTS role_assignments (
    subscription_id TEXT NOT NULL COLLATE NOCASE,
    object_id       TEXT NOT NULL COLLATE NOCASE,
    role            TEXT NOT NULL,
    PRIMARY KEY (subscription_id, object_id)
);
