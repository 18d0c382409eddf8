-- Bizzy schema, part 10: every change to a display token that matters to a login is announced
-- on the channel bizzy_token, its payload the token id, so each worker forgets the token and
-- cuts off the displays logged in with it at once (src/modules/ingest/login/token.rs): a token
-- revoked (or revived), deleted, or its secret or hives changed. A new token announces nothing
-- (a worker never remembers a token no row has); neither does a new name. NOTIFY is sent at
-- commit, once per distinct token id per transaction. TRUNCATE announces an empty payload:
-- every token may have changed.

CREATE FUNCTION api_token_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bizzy_token', OLD.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER api_token_delete AFTER DELETE ON api_token
    FOR EACH ROW EXECUTE FUNCTION api_token_notify();

CREATE TRIGGER api_token_update AFTER UPDATE OF revoked_at, secret_hash, hive_ids
    ON api_token FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
          OR OLD.secret_hash IS DISTINCT FROM NEW.secret_hash
          OR OLD.hive_ids IS DISTINCT FROM NEW.hive_ids)
    EXECUTE FUNCTION api_token_notify();

CREATE FUNCTION api_token_notify_all() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bizzy_token', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER api_token_truncate AFTER TRUNCATE ON api_token
    FOR EACH STATEMENT EXECUTE FUNCTION api_token_notify_all();
