-- Bizzy schema, part 4: every report a sensor sent (PROTOCOL.md), partitioned by month, and
-- the record of payloads already seen that makes a duplicate "stored once, including across a
-- month boundary".

-- A sequence of its own rather than an identity column: PostgreSQL 15 applies an identity only
-- to rows inserted through the partitioned table, a default applies to every partition.
CREATE SEQUENCE sensor_report_id_seq AS bigint;

-- Partitioned on the receive time, which the server sets (sensor clocks can be anything), in
-- UTC months. The partition key must be in every unique key, hence the primary key
-- (id, received_at), and why duplicates are detected in sensor_report_seen below.
CREATE TABLE sensor_report (
    id              bigint NOT NULL DEFAULT nextval('sensor_report_id_seq'),
    sensor_id       bigint NOT NULL REFERENCES sensor (id),
    -- The topic the report came on: sensors/{id}/counter, event or status.
    kind            text NOT NULL CHECK (kind IN ('counter', 'event', 'status')),
    received_at     timestamptz NOT NULL,
    -- The time the report claims (an event batch: its last event); NULL when unknown.
    sensor_time     timestamptz,
    -- The time the counting used: sensor_time when within ingest.max_clock_skew of ours,
    -- otherwise received_at. It decides the day and the hourly rollup a report belongs to.
    trusted_time    timestamptz NOT NULL,
    -- The payload as received: the record. Decoded fields follow as columns where queries or
    -- counting use them; the rest (event distances, status fields) is decoded from here.
    payload         bytea NOT NULL CHECK (length(payload) BETWEEN 1 AND 512),
    -- Counter reports: 1 legacy, 2 the v2 firmware.
    version         smallint CHECK (version IN (1, 2)),
    -- The report_type byte (0xFF threshold, 0x20 timeout, 0x21 restart, others unknown).
    report_type     smallint CHECK (report_type BETWEEN 0 AND 255),
    message_counter integer CHECK (message_counter BETWEEN 0 AND 65535),
    total_in        integer CHECK (total_in BETWEEN 0 AND 65535),
    total_out       integer CHECK (total_out BETWEEN 0 AND 65535),
    diff_in         integer CHECK (diff_in BETWEEN 0 AND 65535),
    diff_out        integer CHECK (diff_out BETWEEN 0 AND 65535),
    tz_offset_min   smallint,
    -- Event reports: the entries and exits in the batch.
    entries         smallint CHECK (entries BETWEEN 0 AND 64),
    exits           smallint CHECK (exits BETWEEN 0 AND 64),
    -- What the report added to its hive (after the direction swap); NULL when not applied.
    delta_in        integer CHECK (delta_in >= 0),
    delta_out       integer CHECK (delta_out >= 0),
    -- Whether the report moved occupancy, and why (or why not).
    applied         boolean NOT NULL,
    reason          text CHECK (reason IN (
                        'baseline',      -- first counter report: sets the baseline
                        'late',          -- older than the baseline: stored only
                        'restart',       -- applied: the sensor counted from 0
                        'wrap',          -- applied: a total wrapped at the modulus
                        'anomaly',       -- delta above ingest.max_delta: baseline moved only
                        'mode_mismatch', -- not the sensor's counting mode
                        'previous_day',  -- before the last reset: history, not today's count
                        'status')),      -- a status message counts nothing
    CHECK (applied OR reason IS NOT NULL),
    CHECK (applied = (delta_in IS NOT NULL)),
    CHECK ((kind = 'counter') = (version IS NOT NULL)),
    PRIMARY KEY (id, received_at)
) PARTITION BY RANGE (received_at);

-- A sensor's reports in time order (GET /v1/sensors/{device_id}, diagnostics, replays); also
-- the index the foreign key to sensor needs. Created on the parent: every partition gets it.
CREATE INDEX sensor_report_sensor_idx ON sensor_report (sensor_id, received_at);

-- Creates the monthly partitions of sensor_report for the `months` months starting with the
-- one that holds `since` (UTC), those that do not exist yet, and returns their names. The
-- server's timer calls it (e.g. daily, with months = 2), so a month's partition exists well
-- before its first report. There is deliberately no DEFAULT partition: a report for a month
-- with no partition fails loudly (and waits in the spool) instead of filling a default
-- partition that would then block creating the month's own.
CREATE FUNCTION sensor_report_create_partitions(months integer DEFAULT 2,
                                                since timestamptz DEFAULT now())
RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    first timestamp := date_trunc('month', since AT TIME ZONE 'UTC');
    low timestamp;
    part text;
BEGIN
    -- Several nodes' timers may run together: one at a time, for the rest of the transaction.
    PERFORM pg_advisory_xact_lock(hashtext('sensor_report_create_partitions'));
    FOR i IN 0 .. months - 1 LOOP
        low := first + make_interval(months => i);
        part := 'sensor_report_' || to_char(low, 'YYYY_MM');
        CONTINUE WHEN to_regclass(quote_ident(part)) IS NOT NULL;
        EXECUTE format('CREATE TABLE %I PARTITION OF sensor_report FOR VALUES FROM (%L) TO (%L)',
                       part, low AT TIME ZONE 'UTC',
                       (low + interval '1 month') AT TIME ZONE 'UTC');
        RETURN NEXT part;
    END LOOP;
END
$$;

-- The current month and the next, so that a server started right after `bizzy migrate` can
-- store reports before its timer first runs.
SELECT sensor_report_create_partitions(2);

-- The payloads already stored, per sensor and topic, for ingest.dedupe_window (24 h by
-- default): a key of its own, independent of the month partitions. The ingest stores a
-- counter or event report only when this insert claims the payload:
--
--   INSERT INTO sensor_report_seen AS s (sensor_id, kind, payload_sha256, first_received_at)
--   VALUES ($1, $2, $3, $4)
--   ON CONFLICT (sensor_id, kind, payload_sha256) DO UPDATE
--       SET first_received_at = excluded.first_received_at
--       WHERE s.first_received_at < excluded.first_received_at - $window
--   RETURNING true
--
-- (no row back: a duplicate; an expired entry not yet pruned counts as unseen). Two workers
-- claiming the same payload at once serialize on the key: the second waits for the first's
-- transaction, and sees a duplicate if it committed, a new payload if it rolled back. Status
-- messages are never duplicates and are not recorded here.
CREATE TABLE sensor_report_seen (
    sensor_id         bigint NOT NULL REFERENCES sensor (id) ON DELETE CASCADE,
    kind              text NOT NULL CHECK (kind IN ('counter', 'event')),
    -- SHA-256 of the payload: 32 bytes whatever the payload's length, a compact key.
    payload_sha256    bytea NOT NULL CHECK (length(payload_sha256) = 32),
    first_received_at timestamptz NOT NULL,
    PRIMARY KEY (sensor_id, kind, payload_sha256)
);
CREATE INDEX sensor_report_seen_first_idx ON sensor_report_seen (first_received_at);

-- Forgets the payloads first seen more than `dedupe_window` before `at`; returns how many.
-- Called by the server's timer with ingest.dedupe_window.
CREATE FUNCTION sensor_report_seen_prune(dedupe_window interval DEFAULT interval '24 hours',
                                         at timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    pruned bigint;
BEGIN
    DELETE FROM sensor_report_seen WHERE first_received_at < at - dedupe_window;
    GET DIAGNOSTICS pruned = ROW_COUNT;
    RETURN pruned;
END
$$;
