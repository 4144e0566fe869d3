-- The agent-facing backup data plane: machine identities, encryption info per registered
-- server, packs and the chunks inside them, recovery-point manifests.

-- A registered server's own identity in entra-sim (an app whose certificate the agent holds).
CREATE TABLE machines (
    app_id          TEXT PRIMARY KEY COLLATE NOCASE,
    vault_id        INTEGER NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
    container       TEXT NOT NULL COLLATE NOCASE,
    service_principal_id TEXT NOT NULL,
    registered_at   INTEGER NOT NULL
);

-- What a server's data is encrypted with: the master key wrapped by the passphrase's
-- Argon2id key (the server never sees either), and a check value of the master key.
CREATE TABLE encryption (
    vault_id        INTEGER NOT NULL,
    container       TEXT NOT NULL COLLATE NOCASE,
    info            TEXT NOT NULL,              -- JSON: salt, KDF parameters, wrapped key
    key_check       TEXT NOT NULL,
    PRIMARY KEY (vault_id, container),
    FOREIGN KEY (vault_id, container) REFERENCES containers(vault_id, name) ON DELETE CASCADE
);

CREATE TABLE packs (
    vault_id        INTEGER NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
    id              TEXT NOT NULL,              -- BLAKE3 of the pack bytes, hex
    size            INTEGER NOT NULL,
    uploaded_at     INTEGER NOT NULL,
    PRIMARY KEY (vault_id, id)
);

CREATE TABLE chunks (
    vault_id        INTEGER NOT NULL,
    id              TEXT NOT NULL,              -- keyed BLAKE3 of the plaintext, hex (opaque here)
    pack            TEXT NOT NULL,
    offset          INTEGER NOT NULL,
    length          INTEGER NOT NULL,
    PRIMARY KEY (vault_id, id),
    FOREIGN KEY (vault_id, pack) REFERENCES packs(vault_id, id) ON DELETE CASCADE
);

ALTER TABLE recovery_points ADD COLUMN manifest_size INTEGER NOT NULL DEFAULT 0;
ALTER TABLE recovery_points ADD COLUMN chunk_count INTEGER NOT NULL DEFAULT 0;
-- The chunk ids a recovery point references live beside its manifest in blob storage
-- (`manifests/{vault}/{rp}.chunks`, 32 bytes each): retention and garbage collection read them.
