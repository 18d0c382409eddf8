-- What the public resources read (DESIGN.md section 8, GET /v1/hives and the occupancy's
-- vs_usual): a name search that ignores case and accents, a proximity search, and a hive's
-- usual occupancy at an hour. PostgreSQL's contrib is enough (no PostGIS); the four extensions
-- are trusted, so the database owner creates them.

CREATE EXTENSION IF NOT EXISTS unaccent SCHEMA public;
CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
CREATE EXTENSION IF NOT EXISTS cube SCHEMA public;
CREATE EXTENSION IF NOT EXISTS earthdistance SCHEMA public;

-- A name as the search compares it: accents dropped, then lower-cased ("CAFÉ" -> "cafe";
-- unaccent first, so that lower() has only ASCII left to fold whatever the collation).
-- unaccent() itself is only STABLE (its dictionary could change); naming the dictionary and
-- the schemas makes the result depend on the argument alone, so it may sit in an index.
CREATE FUNCTION search_fold(name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $$
    SELECT lower(public.unaccent('public.unaccent'::regdictionary, $1))
$$;

-- GET /v1/hives?q=: a substring anywhere in the folded name (LIKE '%...%'), which trigrams
-- serve; it replaces 0002's prefix-only index.
CREATE INDEX hive_name_trgm_idx ON hive USING gin (search_fold(name) gin_trgm_ops)
    WHERE deleted_at IS NULL;
DROP INDEX hive_name_idx;

-- GET /v1/hives?near=lat,lon&radius_m=: earth_box(...) @> ll_to_earth(...) uses this index,
-- then earth_distance() keeps the rows within the radius and orders them.
CREATE INDEX address_earth_idx ON address USING gist (ll_to_earth(latitude, longitude));

-- The cache manager's "changed since my last pass" (hive and hive_status have theirs).
CREATE INDEX address_updated_idx ON address (updated_at);
CREATE INDEX hive_image_updated_idx ON hive_image (updated_at);

-- A removed image leaves no row to find by updated_at: it touches its hive instead.
CREATE FUNCTION hive_image_removed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE hive SET updated_at = now() WHERE id = OLD.hive_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER hive_image_removed AFTER DELETE ON hive_image
    FOR EACH ROW EXECUTE FUNCTION hive_image_removed();

-- How busy hive `hive` usually is at `at`: the average of its hourly averages at the same local
-- weekday and hour (in the hive's time zone) 7, 14, 21 and 28 days before. NULL unless at least
-- two of those four hours were observed for half the hour or more: without enough history a
-- comparison would mislead. The local hour is stepped back as a local time, so that a DST change
-- in between keeps the same clock hour.
CREATE FUNCTION hive_usual(hive bigint, at timestamptz) RETURNS double precision
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN count(*) >= 2 THEN avg(hh.average_occupancy) END
    FROM hive h
    CROSS JOIN generate_series(1, 4) AS w(weeks)
    JOIN hive_hourly hh
      ON hh.hive_id = h.id
     AND hh.hour = (date_trunc('hour', $2 AT TIME ZONE h.time_zone)
                    - make_interval(days => 7 * w.weeks)) AT TIME ZONE h.time_zone
    WHERE h.id = $1
      AND hh.completeness >= 0.5
      AND hh.average_occupancy IS NOT NULL
$$;
