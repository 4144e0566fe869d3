-- ARM state of vault-server: resource groups, Recovery Services vaults and their Backup
-- views. Names are case-insensitive, as in ARM.

CREATE TABLE resource_groups (
    subscription_id TEXT NOT NULL COLLATE NOCASE,
    name            TEXT NOT NULL COLLATE NOCASE,
    location        TEXT NOT NULL,
    tags            TEXT NOT NULL,              -- JSON object
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (subscription_id, name)
);

CREATE TABLE vaults (
    id                      INTEGER PRIMARY KEY,
    -- The vault's numeric id (ResourceId of vault credentials and certificate uploads).
    resource_number         INTEGER NOT NULL UNIQUE,
    subscription_id         TEXT NOT NULL COLLATE NOCASE,
    resource_group          TEXT NOT NULL COLLATE NOCASE,
    name                    TEXT NOT NULL COLLATE NOCASE,
    location                TEXT NOT NULL,
    tags                    TEXT NOT NULL,      -- JSON object
    sku                     TEXT NOT NULL,      -- JSON object
    identity                TEXT,               -- JSON object (type, principalId, tenantId)
    -- JSON: the settable properties as stored; backupstorageconfig and backupconfig are
    -- views of redundancySettings and securitySettings.softDeleteSettings.
    properties              TEXT NOT NULL,
    extended_info           TEXT,               -- JSON: vaultExtendedInfo properties
    registration_app_id     TEXT,               -- entra-sim app whose certificates register agents
    registration_sp_id      TEXT,
    etag                    TEXT NOT NULL,
    created_at              INTEGER NOT NULL,
    created_by              TEXT NOT NULL,
    updated_at              INTEGER NOT NULL,
    updated_by              TEXT NOT NULL,
    FOREIGN KEY (subscription_id, resource_group) REFERENCES resource_groups(subscription_id, name),
    UNIQUE (subscription_id, resource_group, name)
);

-- Certificates uploaded for vault credentials; the newest valid one is the vault's latest.
CREATE TABLE vault_certificates (
    vault_id        INTEGER NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
    name            TEXT NOT NULL COLLATE NOCASE,
    thumbprint      TEXT NOT NULL,
    certificate     TEXT NOT NULL,              -- base64 DER (public)
    subject         TEXT NOT NULL,
    issuer          TEXT NOT NULL,
    valid_from      INTEGER NOT NULL,
    valid_to        INTEGER NOT NULL,
    entra_key_id    TEXT NOT NULL,
    uploaded_at     INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    PRIMARY KEY (vault_id, name)
);

-- Registered servers (MARS containers).
CREATE TABLE containers (
    vault_id        INTEGER NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
    name            TEXT NOT NULL COLLATE NOCASE,
    container_id    INTEGER NOT NULL,
    friendly_name   TEXT NOT NULL,
    agent_version   TEXT NOT NULL,
    registered_at   INTEGER NOT NULL,
    PRIMARY KEY (vault_id, name)
);

CREATE TABLE protected_items (
    vault_id        INTEGER NOT NULL,
    container       TEXT NOT NULL COLLATE NOCASE,
    name            TEXT NOT NULL COLLATE NOCASE,
    friendly_name   TEXT NOT NULL,
    policy_name     TEXT NOT NULL DEFAULT '',
    protection_state TEXT NOT NULL,
    last_backup_status TEXT,
    last_backup_time INTEGER,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (vault_id, container, name),
    FOREIGN KEY (vault_id, container) REFERENCES containers(vault_id, name) ON DELETE CASCADE
);

CREATE TABLE recovery_points (
    vault_id        INTEGER NOT NULL,
    container       TEXT NOT NULL COLLATE NOCASE,
    item            TEXT NOT NULL COLLATE NOCASE,
    name            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER,
    PRIMARY KEY (vault_id, container, item, name),
    FOREIGN KEY (vault_id, container, item) REFERENCES protected_items(vault_id, container, name) ON DELETE CASCADE
);

CREATE TABLE jobs (
    vault_id        INTEGER NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
    id              TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    operation       TEXT NOT NULL,
    status          TEXT NOT NULL,
    entity_name     TEXT NOT NULL,
    server_name     TEXT NOT NULL,
    start_time      INTEGER NOT NULL,
    end_time        INTEGER,
    details         TEXT NOT NULL,              -- JSON: errorDetails, propertyBag
    PRIMARY KEY (vault_id, id)
);

CREATE TABLE policies (
    vault_id        INTEGER NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
    name            TEXT NOT NULL COLLATE NOCASE,
    properties      TEXT NOT NULL,              -- JSON: MabProtectionPolicy properties
    PRIMARY KEY (vault_id, name)
);

CREATE TABLE role_assignments (
    subscription_id TEXT NOT NULL COLLATE NOCASE,
    object_id       TEXT NOT NULL COLLATE NOCASE,
    role            TEXT NOT NULL,
    PRIMARY KEY (subscription_id, object_id)
);
