-- Bizzy schema, part 14: what a signed-in user sets for themselves (/v1/me) and the threshold
-- alerts of /v1/me/notifications, raised into /v1/me/inbox as occupancy changes.
--
-- A rule ("tell me when hive H goes below / above N % of its capacity") is evaluated by a
-- trigger on hive_status, in the transaction that changes the occupancy: the row lock of that
-- hive_status row orders every change of one hive, whichever worker or node commits it, so a
-- crossing is seen once and raised once. Hysteresis: a rule that fired is disarmed, and armed
-- again only when the occupancy has gone back 5 points past its threshold; a crossing inside
-- the user's quiet hours (in the user's time zone) is not raised, and disarms all the same; so
-- is the daily reset to 0 (last_reset_at moves): a venue closing is no news.

-- The user's time zone (IANA) and quiet hours, local times in that zone: both null for none;
-- the window may span midnight (22:00 to 07:00), and is never empty.
ALTER TABLE app_user
    ADD COLUMN time_zone  time_zone_name NOT NULL DEFAULT 'UTC',
    ADD COLUMN quiet_from time,
    ADD COLUMN quiet_to   time,
    ADD CONSTRAINT app_user_quiet_hours_check
        CHECK ((quiet_from IS NULL) = (quiet_to IS NULL)
               AND (quiet_from IS NULL OR quiet_from <> quiet_to));

-- Whether the rule may fire (the hysteresis state).
ALTER TABLE user_notification_def ADD COLUMN armed boolean NOT NULL DEFAULT true;

-- The rules of one user (/v1/me/notifications), by id.
CREATE INDEX user_notification_def_user_idx ON user_notification_def (user_id, id);

-- The inbox filtered to unread messages, newest first.
CREATE INDEX user_message_unread_idx ON user_message (user_id, id DESC) WHERE read_at IS NULL;

-- Whether a below / above rule of `threshold` holds at `occupancy` of `capacity` (null without
-- a capacity: no rule of that hive holds nor fires).
CREATE FUNCTION threshold_met(kind text, threshold smallint, occupancy integer, capacity integer)
RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN capacity IS NULL OR capacity <= 0 THEN NULL
                WHEN kind = 'below' THEN occupancy * 100.0 / capacity < threshold
                WHEN kind = 'above' THEN occupancy * 100.0 / capacity > threshold
           END
$$;

-- Whether local time `t` is inside the quiet hours `q_from` to `q_to` (spanning midnight when
-- `q_from` > `q_to`); false without quiet hours.
CREATE FUNCTION in_quiet_hours(t time, q_from time, q_to time) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN q_from IS NULL OR q_to IS NULL THEN false
                WHEN q_from < q_to THEN t >= q_from AND t < q_to
                ELSE t >= q_from OR t < q_to
           END
$$;

CREATE FUNCTION hive_status_thresholds() RETURNS trigger
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
        ELSIF NOT r.armed AND (r.kind = 'below' AND pct >= r.threshold + 5
                               OR r.kind = 'above' AND pct <= r.threshold - 5) THEN
            UPDATE user_notification_def SET armed = true WHERE id = r.id;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

-- Only a change of the number runs the rules: the ingest's other updates of hive_status
-- (degraded, integrated_at) and a count written again unchanged cost nothing.
CREATE TRIGGER hive_status_thresholds AFTER UPDATE OF occupancy ON hive_status
    FOR EACH ROW WHEN (NEW.occupancy IS DISTINCT FROM OLD.occupancy)
    EXECUTE FUNCTION hive_status_thresholds();
