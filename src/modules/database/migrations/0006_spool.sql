-- Bizzy schema, part 6: how far each ingest spool file has been replayed.
--
-- While PostgreSQL is unreachable a worker appends each batch of sensor reports to a spool file
-- (database.spool_dir) and acknowledges it; once PostgreSQL is back the records are replayed,
-- one transaction each, and each such transaction also sets `replayed` to the offset where its
-- record ends. A worker that dies mid-replay leaves the file to another, which skips what this
-- row says is applied: no record is applied twice, status messages (never duplicates) included.
-- The row is deleted once the file is removed; `spool_id` is the 16-byte id in the file's
-- header, never reused.
CREATE TABLE spool_replay (
    spool_id   bytea PRIMARY KEY CHECK (length(spool_id) = 16),
    replayed   bigint NOT NULL CHECK (replayed >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
