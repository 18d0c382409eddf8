-- What the occupancy answer (DESIGN.md section 8) needs beyond hive_status: whether each sensor
-- is online, and whether its hive is degraded.

-- A sensor is online when it was heard within twice its reporting interval: the interval of the
-- configuration it acknowledged, or the factory 15 minutes when it never acknowledged one
-- (PROTOCOL.md, "General rules"). A sensor never heard from is offline.
CREATE VIEW sensor_health AS
SELECT s.id AS sensor_id, s.device_id, s.hive_id, s.last_seen,
       coalesce(c.reporting_interval_min, 15) AS reporting_interval_min,
       coalesce(s.last_seen >= now() - make_interval(mins => 2 * coalesce(c.reporting_interval_min, 15)),
                false) AS online,
       -- The newest configuration issued (0: none, the factory one), and whether the sensor
       -- reported applying it.
       coalesce(n.configuration_id, 0) AS configuration_id,
       s.config_acknowledged_id >= coalesce(n.configuration_id, 0) AS configuration_acknowledged
FROM sensor s
LEFT JOIN sensor_report_config c
       ON c.sensor_id = s.id AND c.configuration_id = s.config_acknowledged_id
LEFT JOIN LATERAL (SELECT max(configuration_id) AS configuration_id
                   FROM sensor_report_config WHERE sensor_id = s.id) n ON true
WHERE s.deleted_at IS NULL;

-- The occupancy answer of every live hive: a hive with an offline sensor is degraded (its number
-- is probably low, PROTOCOL.md section 6).
CREATE VIEW hive_occupancy AS
SELECT hs.hive_id, hs.occupancy, h.capacity, hs.updated_at,
       EXISTS (SELECT 1 FROM sensor_health sh WHERE sh.hive_id = hs.hive_id AND NOT sh.online)
           AS degraded
FROM hive_status hs
JOIN hive h ON h.id = hs.hive_id
WHERE h.deleted_at IS NULL;

-- The degraded flag the server last published for the hive: the timer that watches sensors go
-- silent publishes a hive again when hive_occupancy's flag differs, with a conditional UPDATE,
-- so one worker of one node does it.
ALTER TABLE hive_status ADD COLUMN degraded boolean NOT NULL DEFAULT false;

-- The time-weighted hourly figures are integrated at every change of a hive's occupancy, many
-- times a second for a busy hive: in milliseconds, so that short stretches do not round away.
-- How far each hive is integrated is kept with its occupancy.
ALTER TABLE hive_hourly
    DROP COLUMN average_occupancy,
    DROP COLUMN completeness,
    DROP CONSTRAINT hive_hourly_observed_seconds_check;
ALTER TABLE hive_hourly RENAME COLUMN occupancy_seconds TO occupancy_ms;
ALTER TABLE hive_hourly RENAME COLUMN observed_seconds TO observed_ms;
ALTER TABLE hive_hourly
    ADD CONSTRAINT hive_hourly_observed_ms_check CHECK (observed_ms BETWEEN 0 AND 3600000),
    ADD COLUMN average_occupancy double precision GENERATED ALWAYS AS
        (occupancy_ms::double precision / NULLIF(observed_ms, 0)) STORED,
    -- 0..1: how much of the hour the figures cover; a partial hour is shown as such.
    ADD COLUMN completeness real GENERATED ALWAYS AS (observed_ms / 3600000.0) STORED;
ALTER TABLE hive_status ADD COLUMN integrated_at timestamptz;
