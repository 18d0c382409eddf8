-- Bizzy schema, part 5: hourly rollups per hive, what history, peak hours and the business
-- analytics read (never the raw reports).

-- One row per hive and local clock hour. `hour` is the instant that hour starts in the hive's
-- time zone: a whole UTC hour for most zones, the half hour for +05:30, and both copies of the
-- hour a DST change repeats are rows of their own.
--
-- The time-weighted average is kept as an integral (person-seconds) over the seconds observed,
-- both integers, so that the ingest adds to them in any order without rounding drift; the
-- average and the completeness are derived from them.
CREATE TABLE hive_hourly (
    hive_id            bigint NOT NULL REFERENCES hive (id) ON DELETE CASCADE,
    hour               timestamptz NOT NULL,
    entries            integer NOT NULL DEFAULT 0 CHECK (entries >= 0),
    exits              integer NOT NULL DEFAULT 0 CHECK (exits >= 0),
    -- Occupancy integrated over the observed seconds of the hour.
    occupancy_seconds  bigint NOT NULL DEFAULT 0 CHECK (occupancy_seconds >= 0),
    -- Seconds of the hour during which the hive's sensors were online (not degraded).
    observed_seconds   integer NOT NULL DEFAULT 0 CHECK (observed_seconds BETWEEN 0 AND 3600),
    peak_occupancy     integer NOT NULL DEFAULT 0 CHECK (peak_occupancy >= 0),
    average_occupancy  double precision GENERATED ALWAYS AS
                           (occupancy_seconds::double precision / NULLIF(observed_seconds, 0))
                           STORED,
    -- 0..1: how much of the hour the figures cover; a partial hour is shown as such.
    completeness       real GENERATED ALWAYS AS (observed_seconds / 3600.0) STORED,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (hive_id, hour)
);
-- The primary key serves /v1/hives/{id}/history and peak-hours (one hive, a range of hours);
-- the cache manager and the account analytics go through hive (account_id) to it.
