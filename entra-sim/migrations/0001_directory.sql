-- The directory: tenants, app registrations and their credentials, service principals,
-- managed identities, app-role assignments, and the token-signing keys.
CREATE TABLE tenants (
    id           TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    domain       TEXT NOT NULL UNIQUE COLLATE NOCASE,
    created_at   INTEGER NOT NULL
);

CREATE TABLE applications (
    object_id       TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    app_id          TEXT NOT NULL UNIQUE,
    display_name    TEXT NOT NULL,
    identifier_uris TEXT NOT NULL DEFAULT '[]', -- JSON array of strings
    app_roles       TEXT NOT NULL DEFAULT '[]', -- JSON array of {id, value, displayName}
    created_at      INTEGER NOT NULL
);

-- Client secrets: only a SHA-256 of the (high-entropy, generated) secret is stored.
CREATE TABLE password_credentials (
    key_id        TEXT PRIMARY KEY,
    app_object_id TEXT NOT NULL REFERENCES applications(object_id) ON DELETE CASCADE,
    display_name  TEXT,
    hint          TEXT NOT NULL,
    secret_sha256 BLOB NOT NULL,
    start_at      INTEGER NOT NULL,
    end_at        INTEGER NOT NULL
);
CREATE INDEX password_credentials_app ON password_credentials(app_object_id);

-- Certificates: the public certificate only, found by its thumbprints (x5t, x5t#S256).
CREATE TABLE key_credentials (
    key_id            TEXT PRIMARY KEY,
    app_object_id     TEXT NOT NULL REFERENCES applications(object_id) ON DELETE CASCADE,
    display_name      TEXT,
    thumbprint_sha1   TEXT NOT NULL,
    thumbprint_sha256 TEXT NOT NULL,
    certificate_der   BLOB NOT NULL,
    start_at          INTEGER NOT NULL,
    end_at            INTEGER NOT NULL
);
CREATE INDEX key_credentials_app ON key_credentials(app_object_id);

CREATE TABLE service_principals (
    object_id    TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    app_id       TEXT NOT NULL,
    display_name TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('Application', 'ManagedIdentity')),
    created_at   INTEGER NOT NULL,
    UNIQUE (tenant_id, app_id)
);

CREATE TABLE managed_identities (
    object_id   TEXT PRIMARY KEY REFERENCES service_principals(object_id) ON DELETE CASCADE,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    client_id   TEXT NOT NULL UNIQUE,
    resource_id TEXT NOT NULL UNIQUE COLLATE NOCASE,
    kind        TEXT NOT NULL CHECK (kind IN ('SystemAssigned', 'UserAssigned')),
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE app_role_assignments (
    id                  TEXT PRIMARY KEY,
    principal_object_id TEXT NOT NULL REFERENCES service_principals(object_id) ON DELETE CASCADE,
    resource_app_id     TEXT NOT NULL,
    app_role            TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    UNIQUE (principal_object_id, resource_app_id, app_role)
);

-- At most one 'current' and one 'previous' key; the JWKS serves both.
CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY,
    private_key_pem TEXT NOT NULL,
    certificate_der BLOB NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('current', 'previous')),
    created_at      INTEGER NOT NULL
);
CREATE UNIQUE INDEX signing_keys_one_per_state ON signing_keys(state);
