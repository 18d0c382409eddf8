-- Bizzy schema, part 13: every change to what the public details of a hive show is announced on
-- the channel bizzy_hive, so that the cache manager of every node rewrites the hive's entries
-- in the memcached replica at once (src/modules/cache/manager.rs): its payload is the hive id
-- for a change of the hive, of its address or of its images, and '' for a change of the hive
-- types (all of them). NOTIFY is sent at commit, once per distinct payload per transaction.
-- Occupancy changes have their own channel, bizzy_occupancy.

CREATE FUNCTION hive_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('bizzy_hive', OLD.id::text);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('bizzy_hive', NEW.id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER hive_notify AFTER INSERT OR UPDATE OR DELETE ON hive
    FOR EACH ROW EXECUTE FUNCTION hive_notify();

-- An address belongs to at most one hive (hive.address_id is unique); a new address has none
-- yet: its hive's INSERT announces it.
CREATE FUNCTION hive_address_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('bizzy_hive', h.id::text) FROM hive h WHERE h.address_id = OLD.id;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.id <> OLD.id THEN
        PERFORM pg_notify('bizzy_hive', h.id::text) FROM hive h WHERE h.address_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER hive_address_notify AFTER UPDATE OR DELETE ON address
    FOR EACH ROW EXECUTE FUNCTION hive_address_notify();

CREATE FUNCTION hive_image_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('bizzy_hive', OLD.hive_id::text);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('bizzy_hive', NEW.hive_id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER hive_image_notify AFTER INSERT OR UPDATE OR DELETE ON hive_image
    FOR EACH ROW EXECUTE FUNCTION hive_image_notify();

CREATE FUNCTION hive_type_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bizzy_hive', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER hive_type_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON hive_type
    FOR EACH STATEMENT EXECUTE FUNCTION hive_type_notify();
