-- Bizzy schema, part 11: every configuration issued to a live sensor is announced on the channel
-- bizzy_config, so that one worker of every node publishes it, retained at QoS 1, on
-- commands/sensor/{device_id} (PROTOCOL.md section 5; src/modules/ingest/push.rs). The payload
-- carries all that publishing needs, so no node reads the database for it:
--
--     device_id configuration_id threshold_cm reporting_interval_min status_interval_min event_threshold
--
-- six fields separated by one space (a device id has no space), e.g. "door-1 7 80 15 60 10".
-- NOTIFY is sent at commit; a configuration of a deleted sensor announces nothing.

CREATE FUNCTION sensor_config_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    device text;
BEGIN
    SELECT device_id INTO device FROM sensor WHERE id = NEW.sensor_id AND deleted_at IS NULL;
    IF device IS NOT NULL THEN
        PERFORM pg_notify('bizzy_config', concat_ws(' ', device, NEW.configuration_id,
            NEW.threshold_cm, NEW.reporting_interval_min, NEW.status_interval_min,
            NEW.event_threshold));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER sensor_config_notify AFTER INSERT ON sensor_report_config
    FOR EACH ROW EXECUTE FUNCTION sensor_config_notify();
