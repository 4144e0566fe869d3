-- Storage redundancy made real (blobs.rs): the GRS replication queue (an outbox: a row is
-- committed before its primary write, 'writing', and made 'ready' after it), regions in a
-- simulated outage, and the queue position each recovery point was committed at (it is in
-- the paired region once no queue row of its vault at or below it remains).
CREATE TABLE replication_queue (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    vault_id    INTEGER NOT NULL,
    path        TEXT NOT NULL,
    target      TEXT NOT NULL,          -- store name: region/{region}
    op          TEXT NOT NULL CHECK (op IN ('put', 'delete')),
    state       TEXT NOT NULL CHECK (state IN ('writing', 'ready')),
    size        INTEGER NOT NULL,
    enqueued_at INTEGER NOT NULL        -- simulated clock
);
CREATE INDEX replication_queue_by_state ON replication_queue (state, id);
CREATE INDEX replication_queue_by_vault ON replication_queue (vault_id, id);

CREATE TABLE region_outages (
    region TEXT PRIMARY KEY COLLATE NOCASE,
    since  INTEGER NOT NULL
);

ALTER TABLE recovery_points ADD COLUMN replication_mark INTEGER NOT NULL DEFAULT 0;
