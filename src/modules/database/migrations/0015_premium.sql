-- Bizzy schema, part 15: what the premium calls (GET /v1/hives/{id}/history and
-- /v1/hives/{id}/peak-hours) are gated by. The catalogue of part 1 already names the features
-- and the premium subscription; they are inserted again here only where missing, so that the
-- gate holds whatever was done to the catalogue since.

INSERT INTO feature (code, name) VALUES
    ('history', 'Occupancy history'),
    ('peak_hours', 'Peak hours')
ON CONFLICT (code) DO NOTHING;

INSERT INTO subscription_type (code, name, price_minor, period, for_accounts)
VALUES ('premium', 'Premium', 299, interval '1 month', false)
ON CONFLICT (code) DO NOTHING;

INSERT INTO subscription_type_feature (subscription_type_id, feature_id)
SELECT t.id, f.id
FROM subscription_type t
JOIN feature f ON f.code IN ('history', 'peak_hours')
WHERE t.code = 'premium'
ON CONFLICT DO NOTHING;

-- Whether the user of Firebase uid `uid` has `feature` now: through a subscription of theirs
-- that has started, has not ended (no end: it runs until cancelled) and is not cancelled (a
-- cancellation dated in the future has not happened yet). A uid without a user row has
-- nothing. STABLE: read once per statement, in the statement that does the gated work.
CREATE FUNCTION user_has_feature(uid text, feature text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT EXISTS (
        SELECT 1
        FROM app_user u
        JOIN subscription s ON s.user_id = u.id
        JOIN subscription_type_feature stf ON stf.subscription_type_id = s.subscription_type_id
        JOIN feature f ON f.id = stf.feature_id
        WHERE u.firebase_uid = $1
          AND f.code = $2
          AND s.starts_at <= now()
          AND now() < coalesce(s.ends_at, 'infinity')
          AND (s.cancelled_at IS NULL OR s.cancelled_at > now()))
$$;
