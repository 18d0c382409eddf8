-- Bizzy schema, part 2: hives (venues), where they are, what they look like, their deals, and
-- what users do with them.

-- A time zone name PostgreSQL knows ('Europe/Bucharest'). Declared immutable so that it may sit
-- in a CHECK: the zone database only grows, a name once valid stays valid.
CREATE FUNCTION is_time_zone(name text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
    PERFORM now() AT TIME ZONE name;
    RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN false;
END
$$;

CREATE DOMAIN time_zone_name AS text CHECK (is_time_zone(VALUE));

CREATE TABLE hive_type (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code text NOT NULL UNIQUE CHECK (code ~ '^[a-z][a-z0-9_]{0,31}$'),
    name text NOT NULL
);

INSERT INTO hive_type (code, name) VALUES
    ('bar', 'Bar'),
    ('cafe', 'Café'),
    ('restaurant', 'Restaurant'),
    ('club', 'Club'),
    ('store', 'Store'),
    ('gym', 'Gym'),
    ('other', 'Other');

CREATE TABLE address (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    street     text NOT NULL CHECK (length(street) <= 200),
    city       text NOT NULL CHECK (length(city) BETWEEN 1 AND 100),
    zip        text NOT NULL CHECK (length(zip) <= 16),
    country    char(2) NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    latitude   double precision NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude  double precision NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER address_touch BEFORE UPDATE ON address
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
-- GET /v1/hives?zip=
CREATE INDEX address_zip_idx ON address (zip);
-- GET /v1/hives?near=lat,lon&radius_m=: a bounding box on latitude, then longitude, then the
-- exact distance on the few rows left; no extension (PostGIS, earthdistance) is needed.
CREATE INDEX address_lat_lon_idx ON address (latitude, longitude);

CREATE TABLE hive (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id   bigint NOT NULL REFERENCES account (id),
    -- One address per hive (the seed's one-to-one): the address row is the hive's own.
    address_id   bigint NOT NULL UNIQUE REFERENCES address (id),
    hive_type_id bigint NOT NULL REFERENCES hive_type (id),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description  text CHECK (length(description) <= 4000),
    time_zone    time_zone_name NOT NULL,
    capacity     integer CHECK (capacity > 0),
    -- Local time at which occupancy goes back to 0 (PROTOCOL.md section 6); NULL: no reset,
    -- for venues open around the clock.
    reset_time   time DEFAULT '04:00',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz
);
CREATE TRIGGER hive_touch BEFORE UPDATE ON hive
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE INDEX hive_account_idx ON hive (account_id) WHERE deleted_at IS NULL;
CREATE INDEX hive_type_idx ON hive (hive_type_id) WHERE deleted_at IS NULL;
-- GET /v1/hives?q=: a prefix search on the lower-cased name (text_pattern_ops makes LIKE
-- 'abc%' use the index whatever the collation).
CREATE INDEX hive_name_idx ON hive (lower(name) text_pattern_ops) WHERE deleted_at IS NULL;
-- The cache manager's "changed since my last pass", deletions included.
CREATE INDEX hive_updated_idx ON hive (updated_at);

-- The seed's Hive_status: the live occupancy of a hive (PROTOCOL.md section 6), one row per
-- hive, created with the hive. Updated in the transaction that stores the reports that move it.
--
-- It is the hottest row in the database: fillfactor leaves room on each page so that the
-- update is a HOT one (no index touched), which is also why updated_at has no index: the cache
-- manager scans this table (one short row per hive) rather than make every report pay for one.
CREATE TABLE hive_status (
    hive_id       bigint PRIMARY KEY REFERENCES hive (id) ON DELETE CASCADE,
    occupancy     integer NOT NULL DEFAULT 0 CHECK (occupancy >= 0),
    -- What clamping at 0 absorbed since the last reset: how far the count drifted today.
    drift_today   integer NOT NULL DEFAULT 0 CHECK (drift_today >= 0),
    -- The reset instant (reset_time on a local day, as an instant) the count starts from.
    -- The reset is `UPDATE ... SET occupancy = 0, drift_today = 0, last_reset_at = $instant
    -- WHERE hive_id = $1 AND (last_reset_at IS NULL OR last_reset_at < $instant)`: every
    -- worker and node may try it, it happens once.
    last_reset_at timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 70);

CREATE FUNCTION hive_status_create() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO hive_status (hive_id) VALUES (NEW.id);
    RETURN NULL;
END
$$;
CREATE TRIGGER hive_status_create AFTER INSERT ON hive
    FOR EACH ROW EXECUTE FUNCTION hive_status_create();

-- The networks at a venue a sensor may use (Wi-Fi, the GPRS operator, ...).
CREATE TABLE hive_network (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hive_id    bigint NOT NULL REFERENCES hive (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('wifi', 'gprs', 'lte', 'ethernet', 'lora')),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    details    jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX hive_network_hive_idx ON hive_network (hive_id);

CREATE TABLE hive_image (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hive_id    bigint NOT NULL REFERENCES hive (id) ON DELETE CASCADE,
    url        text NOT NULL CHECK (url ~ '^https?://'),
    kind       text NOT NULL DEFAULT 'secondary' CHECK (kind IN ('cover', 'secondary')),
    position   smallint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER hive_image_touch BEFORE UPDATE ON hive_image
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE INDEX hive_image_hive_idx ON hive_image (hive_id, position);
-- At most one cover image per hive.
CREATE UNIQUE INDEX hive_image_cover_idx ON hive_image (hive_id) WHERE kind = 'cover';

CREATE TABLE deal (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hive_id     bigint NOT NULL REFERENCES hive (id) ON DELETE CASCADE,
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description text CHECK (length(description) <= 4000),
    terms       text CHECK (length(terms) <= 4000),
    starts_at   timestamptz NOT NULL DEFAULT now(),
    ends_at     timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    CHECK (ends_at > starts_at)
);
CREATE TRIGGER deal_touch BEFORE UPDATE ON deal
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
-- GET /v1/hives/{id}/deals: the live deals of a hive (ends_at > now()).
CREATE INDEX deal_hive_idx ON deal (hive_id, ends_at) WHERE deleted_at IS NULL;
-- Deal expiry notifications: the deals ending soon, over all hives.
CREATE INDEX deal_ends_idx ON deal (ends_at) WHERE deleted_at IS NULL;
CREATE INDEX deal_updated_idx ON deal (updated_at);

-- A user and a hive: favourite, and when the user last looked at it (/v1/me/favorites,
-- /v1/me/recent).
CREATE TABLE user_hive (
    user_id         bigint NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    hive_id         bigint NOT NULL REFERENCES hive (id) ON DELETE CASCADE,
    favourite       boolean NOT NULL DEFAULT false,
    favourite_since timestamptz,
    last_visited_at timestamptz,
    PRIMARY KEY (user_id, hive_id),
    CHECK (favourite = (favourite_since IS NOT NULL))
);
CREATE INDEX user_hive_favourite_idx ON user_hive (user_id, favourite_since DESC)
    WHERE favourite;
CREATE INDEX user_hive_recent_idx ON user_hive (user_id, last_visited_at DESC)
    WHERE last_visited_at IS NOT NULL;
-- "Who follows this hive?", for deal notifications.
CREATE INDEX user_hive_hive_idx ON user_hive (hive_id) WHERE favourite;

-- A user's notification rules (/v1/me/notifications): tell me when this hive gets quiet
-- (below) or busy (above) a percentage of its capacity, or has a new deal.
CREATE TABLE user_notification_def (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id           bigint NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    hive_id           bigint NOT NULL REFERENCES hive (id) ON DELETE CASCADE,
    kind              text NOT NULL CHECK (kind IN ('below', 'above', 'deal')),
    threshold_percent smallint CHECK (threshold_percent BETWEEN 0 AND 100),
    enabled           boolean NOT NULL DEFAULT true,
    last_fired_at     timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, hive_id, kind),
    CHECK ((kind = 'deal') = (threshold_percent IS NULL))
);
-- An occupancy change looks up the rules of its hive.
CREATE INDEX user_notification_def_hive_idx ON user_notification_def (hive_id) WHERE enabled;
