-- Bizzy schema, part 16: the threshold rules' hysteresis band (part 14) ends where a count can
-- reach. A rule that fired is armed again 5 points back past its threshold, but never further
-- than 0 % or 100 %: an "above 2 %" rule (anybody there) was never armed again, since no count
-- is below 0 %, and a "below 98 %" rule (a place free) only past 105 %, beyond the capacity.
-- Now an empty hive arms the first and a full one the second. Only that line differs from
-- part 14's function; the trigger calls it by name and is left as it is.

CREATE OR REPLACE FUNCTION hive_status_thresholds() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    cap       integer;
    hive_name text;
    pct       numeric;
    r         record;
    -- The daily reset (PROTOCOL.md section 6) sets the count to 0 and moves last_reset_at.
    reset     boolean := NEW.last_reset_at IS DISTINCT FROM OLD.last_reset_at;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM user_notification_def
                   WHERE hive_id = NEW.hive_id AND enabled AND kind IN ('below', 'above')) THEN
        RETURN NULL;
    END IF;
    SELECT h.capacity, h.name INTO cap, hive_name
    FROM hive h WHERE h.id = NEW.hive_id AND h.deleted_at IS NULL;
    IF cap IS NULL OR cap <= 0 THEN
        RETURN NULL;
    END IF;
    pct := NEW.occupancy * 100.0 / cap;
    FOR r IN
        SELECT d.id, d.user_id, d.kind, d.threshold_percent AS threshold, d.armed,
               reset OR in_quiet_hours((now() AT TIME ZONE u.time_zone)::time, u.quiet_from,
                                       u.quiet_to) AS quiet
        FROM user_notification_def d JOIN app_user u ON u.id = d.user_id
        WHERE d.hive_id = NEW.hive_id AND d.enabled AND d.kind IN ('below', 'above')
        ORDER BY d.id
        FOR UPDATE OF d
    LOOP
        IF r.armed AND threshold_met(r.kind, r.threshold, NEW.occupancy, cap) THEN
            UPDATE user_notification_def
            SET armed = false, last_fired_at = CASE WHEN r.quiet THEN last_fired_at ELSE now() END
            WHERE id = r.id;
            IF NOT r.quiet THEN
                INSERT INTO user_message (user_id, type, content)
                VALUES (r.user_id, 'occupancy',
                        format('%s is at %s%% of its capacity, %s your %s%%.', hive_name,
                               round(pct), r.kind, r.threshold));
            END IF;
        ELSIF NOT r.armed AND (r.kind = 'below' AND pct >= least(r.threshold + 5, 100)
                               OR r.kind = 'above' AND pct <= greatest(r.threshold - 5, 0)) THEN
            UPDATE user_notification_def SET armed = true WHERE id = r.id;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
