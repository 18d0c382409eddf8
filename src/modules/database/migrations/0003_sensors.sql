-- Bizzy schema, part 3: the people-counting sensors, their modems, their configurations and
-- the state the counting rules of PROTOCOL.md section 6 keep per sensor.

CREATE TABLE sensor (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The MQTT client id, username and topic segment (PROTOCOL.md, "General rules").
    device_id            text NOT NULL CHECK (device_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    hive_id              bigint NOT NULL REFERENCES hive (id),
    name                 text CHECK (length(name) <= 100),
    -- The MQTT password, hashed (PBKDF2, in the PHC string format); the secret itself is shown
    -- once, at registration.
    secret_hash          text NOT NULL CHECK (length(secret_hash) BETWEEN 16 AND 512),
    direction            text NOT NULL DEFAULT 'normal' CHECK (direction IN ('normal', 'reversed')),
    -- Where the totals wrap; some firmware wraps before 65536 (near 65523).
    counter_modulus      integer NOT NULL DEFAULT 65536 CHECK (counter_modulus BETWEEN 2 AND 65536),
    -- Fixed by the first counting report (NULL until then), changed by the business API.
    counting_mode        text CHECK (counting_mode IN ('counter', 'event')),

    -- Health, from every message (last_seen) and from status messages.
    last_seen            timestamptz,
    startup_time         timestamptz,
    firmware_version     bigint CHECK (firmware_version BETWEEN 0 AND 4294967295),
    battery_mv           integer CHECK (battery_mv BETWEEN 0 AND 65535),
    gprs_signal          smallint CHECK (gprs_signal BETWEEN 0 AND 99),
    sensor_state         integer CHECK (sensor_state BETWEEN 0 AND 65535),
    discarded_events     integer CHECK (discarded_events BETWEEN 0 AND 65535),
    missed_messages      bigint NOT NULL DEFAULT 0 CHECK (missed_messages >= 0),
    restarts             bigint NOT NULL DEFAULT 0 CHECK (restarts >= 0),
    anomalies            bigint NOT NULL DEFAULT 0 CHECK (anomalies >= 0),
    -- Sensor clock minus ours, at the last report with a known time.
    clock_skew_s         integer,
    -- The configuration id the sensor last reported applying; 0 is the factory configuration.
    config_acknowledged_id bigint NOT NULL DEFAULT 0
        CHECK (config_acknowledged_id BETWEEN 0 AND 4294967295),

    -- The counting baseline: the totals of the last applied counter report, its v2 message
    -- counter, and its trusted time (a late legacy report is one older than this). NULL until
    -- the first counter report.
    last_total_in        integer CHECK (last_total_in BETWEEN 0 AND 65535),
    last_total_out       integer CHECK (last_total_out BETWEEN 0 AND 65535),
    last_message_counter integer CHECK (last_message_counter BETWEEN 0 AND 65535),
    last_trusted_at      timestamptz,

    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    deleted_at           timestamptz,
    CHECK ((last_total_in IS NULL) = (last_total_out IS NULL))
) WITH (fillfactor = 80);
-- Every message updates the health columns: fillfactor keeps those updates HOT (no indexed
-- column among them, so no index is written). No touch_updated_at trigger here for the same
-- reason: updated_at moves when the business changes the sensor, not at each report.

-- A live device id is unique; the id of a deleted sensor may be registered again. This is also
-- the index of the MQTT login (by device id, live sensors only).
CREATE UNIQUE INDEX sensor_device_idx ON sensor (device_id) WHERE deleted_at IS NULL;
CREATE INDEX sensor_hive_idx ON sensor (hive_id) WHERE deleted_at IS NULL;

CREATE TABLE modem (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sensor_id  bigint NOT NULL UNIQUE REFERENCES sensor (id) ON DELETE CASCADE,
    imei       text UNIQUE CHECK (imei ~ '^[0-9]{14,16}$'),
    iccid      text CHECK (iccid ~ '^[0-9]{18,22}F?$'),
    operator   text CHECK (length(operator) <= 100),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- How a sensor reaches us: APN and broker. One per sensor.
CREATE TABLE sensor_network_config (
    sensor_id    bigint PRIMARY KEY REFERENCES sensor (id) ON DELETE CASCADE,
    apn          text CHECK (length(apn) <= 100),
    apn_user     text CHECK (length(apn_user) <= 100),
    broker_host  text NOT NULL CHECK (length(broker_host) BETWEEN 1 AND 253),
    broker_port  integer NOT NULL DEFAULT 1883 CHECK (broker_port BETWEEN 1 AND 65535),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Every configuration issued to a sensor (PROTOCOL.md section 5), kept: the sensor's current
-- one is its highest id, acknowledged once sensor.config_acknowledged_id reaches it.
CREATE TABLE sensor_report_config (
    sensor_id              bigint NOT NULL REFERENCES sensor (id) ON DELETE CASCADE,
    configuration_id       bigint NOT NULL CHECK (configuration_id BETWEEN 1 AND 4294967295),
    threshold_cm           integer NOT NULL CHECK (threshold_cm BETWEEN 10 AND 1000),
    reporting_interval_min integer NOT NULL CHECK (reporting_interval_min BETWEEN 1 AND 1440),
    status_interval_min    integer NOT NULL CHECK (status_interval_min BETWEEN 1 AND 1440),
    event_threshold        integer NOT NULL CHECK (event_threshold BETWEEN 1 AND 1000),
    created_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sensor_id, configuration_id)
);

-- Configuration ids strictly increase per sensor. Two writers racing with max + 1 collide on
-- the primary key (one fails and retries); this trigger refuses an id that goes back.
CREATE FUNCTION sensor_report_config_increasing() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    newest bigint;
BEGIN
    SELECT max(configuration_id) INTO newest
    FROM sensor_report_config WHERE sensor_id = NEW.sensor_id;
    IF newest IS NOT NULL AND NEW.configuration_id <= newest THEN
        RAISE EXCEPTION 'configuration id % of sensor % is not above %',
            NEW.configuration_id, NEW.sensor_id, newest
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER sensor_report_config_increasing BEFORE INSERT ON sensor_report_config
    FOR EACH ROW EXECUTE FUNCTION sensor_report_config_increasing();

-- When a sensor should report more (or less) often than its configuration says: a reporting
-- interval for a window of local time on given days (ISO days, 1 = Monday).
CREATE TABLE sensor_report_schedule (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sensor_id              bigint NOT NULL REFERENCES sensor (id) ON DELETE CASCADE,
    iso_day                smallint NOT NULL CHECK (iso_day BETWEEN 1 AND 7),
    starts                 time NOT NULL,
    ends                   time NOT NULL,
    reporting_interval_min integer NOT NULL CHECK (reporting_interval_min BETWEEN 1 AND 1440),
    CHECK (ends > starts)
);
CREATE INDEX sensor_report_schedule_sensor_idx ON sensor_report_schedule (sensor_id, iso_day);
