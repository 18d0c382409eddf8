-- Bizzy schema, part 9: display API tokens. An account admin creates a token limited to named
-- hives of the account; an embedded display logs in over MQTT with it (username
-- "token:{id}", password the secret, shown once and stored hashed like a sensor's) and may
-- only subscribe to those hives' occupancy. A revoked token (revoked_at set) logs in no more.

CREATE TABLE api_token (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  bigint NOT NULL REFERENCES account (id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    secret_hash text NOT NULL CHECK (length(secret_hash) BETWEEN 16 AND 512),
    hive_ids    bigint[] NOT NULL
        CHECK (cardinality(hive_ids) BETWEEN 1 AND 100 AND array_position(hive_ids, NULL) IS NULL),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_token_account_idx ON api_token (account_id, id);
