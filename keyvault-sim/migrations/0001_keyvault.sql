-- Key Vaults (the Microsoft.KeyVault/vaults resource) and their secrets.
-- Names are case-insensitive, as in Azure.

CREATE TABLE vaults (
    id                 INTEGER PRIMARY KEY,
    -- Vault names are global (they become DNS names), live or soft-deleted.
    name               TEXT NOT NULL UNIQUE COLLATE NOCASE,
    subscription_id    TEXT NOT NULL COLLATE NOCASE,
    resource_group     TEXT NOT NULL COLLATE NOCASE,
    location           TEXT NOT NULL,
    tenant_id          TEXT NOT NULL,
    sku                TEXT NOT NULL,
    tags               TEXT NOT NULL,          -- JSON object
    soft_delete_days   INTEGER NOT NULL,
    purge_protection   INTEGER NOT NULL,
    -- enabledForDeployment / DiskEncryption / TemplateDeployment, publicNetworkAccess,
    -- networkAcls: stored and returned as given.
    options            TEXT NOT NULL,          -- JSON object
    access_policies    TEXT NOT NULL,          -- JSON array of AccessPolicyEntry
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    deleted_at         INTEGER,
    scheduled_purge_at INTEGER
);

CREATE TABLE secrets (
    vault_id           INTEGER NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
    name               TEXT NOT NULL COLLATE NOCASE,
    deleted_at         INTEGER,
    scheduled_purge_at INTEGER,
    PRIMARY KEY (vault_id, name)
);

CREATE TABLE secret_versions (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,   -- newest version = highest seq
    vault_id           INTEGER NOT NULL,
    name               TEXT NOT NULL COLLATE NOCASE,
    version            TEXT NOT NULL,
    -- nonce || AES-256-GCM ciphertext; the associated data binds vault, name and version.
    sealed_value       BLOB NOT NULL,
    content_type       TEXT,
    tags               TEXT,                   -- JSON object or NULL
    enabled            INTEGER NOT NULL,
    not_before         INTEGER,
    expires            INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    FOREIGN KEY (vault_id, name) REFERENCES secrets(vault_id, name) ON DELETE CASCADE,
    UNIQUE (vault_id, name, version)
);

CREATE INDEX secret_versions_latest ON secret_versions(vault_id, name, seq);

-- Subscription-scope ARM roles for the management plane (Owner, Contributor, Reader).
CREATE TABLE role_assignments (
    subscription_id    TEXT NOT NULL COLLATE NOCASE,
    object_id          TEXT NOT NULL COLLATE NOCASE,
    role               TEXT NOT NULL,
    PRIMARY KEY (subscription_id, object_id)
);
