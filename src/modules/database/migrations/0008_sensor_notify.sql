-- Bizzy schema, part 8: every change to a sensor's MQTT login is announced on the channel
-- bizzy_sensor, its payload the device id, so each worker's copy of the logins follows
-- (src/modules/ingest/login/). A login column is device_id, secret_hash, hive_id or
-- deleted_at; the reports' updates of the health columns announce nothing. NOTIFY is sent at
-- commit, once per distinct device id per transaction. TRUNCATE announces an empty payload:
-- every login may have changed.

CREATE FUNCTION sensor_login_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('bizzy_sensor', OLD.device_id);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('bizzy_sensor', NEW.device_id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER sensor_login_insert_delete AFTER INSERT OR DELETE ON sensor
    FOR EACH ROW EXECUTE FUNCTION sensor_login_notify();

CREATE TRIGGER sensor_login_update AFTER UPDATE OF device_id, secret_hash, hive_id, deleted_at
    ON sensor FOR EACH ROW
    WHEN (OLD.device_id IS DISTINCT FROM NEW.device_id
          OR OLD.secret_hash IS DISTINCT FROM NEW.secret_hash
          OR OLD.hive_id IS DISTINCT FROM NEW.hive_id
          OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at)
    EXECUTE FUNCTION sensor_login_notify();

CREATE FUNCTION sensor_login_notify_all() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bizzy_sensor', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER sensor_login_truncate AFTER TRUNCATE ON sensor
    FOR EACH STATEMENT EXECUTE FUNCTION sensor_login_notify_all();
