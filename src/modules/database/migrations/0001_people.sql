-- Bizzy schema, part 1: people, business accounts and what they subscribe to.
--
-- Conventions for every migration:
-- * keys are bigint identities (hive_type, feature and subscription_type, small seeded
--   catalogues, too, so that a foreign key never needs a cast);
-- * instants are timestamptz, written and read in UTC; local times (a hive's reset time) are
--   `time` beside the hive's time zone name;
-- * closed lists are text with a CHECK, not enum types: a CHECK can be widened or narrowed in a
--   transactional migration, an enum value can never be removed;
-- * rows the memcached replica copies carry updated_at, kept by the touch_updated_at trigger,
--   so that the cache manager can ask for the rows changed since its last pass; rows it must
--   expire are soft-deleted (deleted_at) for the same reason.

CREATE FUNCTION touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- "user" is a reserved word in SQL: the table is app_user. The server stores the Firebase uid
-- and nothing else personal (DESIGN.md section 8); a nickname is what the user chose to show.
CREATE TABLE app_user (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    firebase_uid text NOT NULL UNIQUE CHECK (length(firebase_uid) BETWEEN 1 AND 128),
    nickname     text CHECK (length(nickname) BETWEEN 1 AND 64),
    -- Platform admins are named in the configuration (auth.admin_uids); the role records what
    -- the server last saw, for audits. Account admins are rows of account_admin.
    role         text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER app_user_touch BEFORE UPDATE ON app_user
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- The inbox of /v1/me/inbox: messages to a user (from the platform or a business) and the
-- user's feedback to a hive's business.
CREATE TABLE user_message (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    type       text NOT NULL CHECK (type IN ('notice', 'deal', 'occupancy', 'feedback')),
    content    text NOT NULL CHECK (length(content) BETWEEN 1 AND 4000),
    created_at timestamptz NOT NULL DEFAULT now(),
    read_at    timestamptz
);
-- Cursor pagination of one user's inbox, newest first.
CREATE INDEX user_message_user_idx ON user_message (user_id, id DESC);

-- What users do in the apps (pages seen, searches, favourites), for the analytics dashboard.
-- Anonymous users' actions have no user_id. Append-only and large: a BRIN index on the time
-- serves the range scans of the dashboard at a fraction of a B-tree's size.
CREATE TABLE user_analytics (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         bigint REFERENCES app_user (id) ON DELETE CASCADE,
    page_identifier text NOT NULL CHECK (length(page_identifier) BETWEEN 1 AND 128),
    action          text NOT NULL CHECK (length(action) BETWEEN 1 AND 64),
    data_json       jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX user_analytics_created_brin ON user_analytics USING brin (created_at);
CREATE INDEX user_analytics_user_idx ON user_analytics (user_id, created_at)
    WHERE user_id IS NOT NULL;

-- A business: owns hives (and through them sensors, deals, display tokens).
CREATE TABLE account (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER account_touch BEFORE UPDATE ON account
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- The admins of an account (PUT /v1/accounts/{id}/admins/{uid}). Naming a uid that never
-- signed in creates its app_user row first: the uid is all a user row holds.
CREATE TABLE account_admin (
    account_id bigint NOT NULL REFERENCES account (id) ON DELETE CASCADE,
    user_id    bigint NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, user_id)
);
-- "Which accounts may this signed-in user manage?", asked on every business request.
CREATE INDEX account_admin_user_idx ON account_admin (user_id);

CREATE TABLE feature (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code text NOT NULL UNIQUE CHECK (code ~ '^[a-z][a-z0-9_]{0,63}$'),
    name text NOT NULL
);

CREATE TABLE subscription_type (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code         text NOT NULL UNIQUE CHECK (code ~ '^[a-z][a-z0-9_]{0,63}$'),
    name         text NOT NULL,
    -- Money in minor units (cents): never a float.
    price_minor  bigint NOT NULL DEFAULT 0 CHECK (price_minor >= 0),
    currency     char(3) NOT NULL DEFAULT 'EUR' CHECK (currency ~ '^[A-Z]{3}$'),
    period       interval CHECK (period > interval '0'),
    for_accounts boolean NOT NULL DEFAULT false
);

CREATE TABLE subscription_type_feature (
    subscription_type_id bigint NOT NULL REFERENCES subscription_type (id) ON DELETE CASCADE,
    feature_id           bigint NOT NULL REFERENCES feature (id) ON DELETE CASCADE,
    PRIMARY KEY (subscription_type_id, feature_id)
);
CREATE INDEX subscription_type_feature_feature_idx ON subscription_type_feature (feature_id);

-- A subscription belongs to a user or to an account, never both.
CREATE TABLE subscription (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_type_id bigint NOT NULL REFERENCES subscription_type (id),
    user_id              bigint REFERENCES app_user (id) ON DELETE CASCADE,
    account_id           bigint REFERENCES account (id) ON DELETE CASCADE,
    starts_at            timestamptz NOT NULL DEFAULT now(),
    ends_at              timestamptz,
    cancelled_at         timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (num_nonnulls(user_id, account_id) = 1),
    CHECK (ends_at IS NULL OR ends_at > starts_at)
);
-- "Does this user (account) have premium now?": its subscriptions, latest first.
CREATE INDEX subscription_user_idx ON subscription (user_id, starts_at DESC)
    WHERE user_id IS NOT NULL;
CREATE INDEX subscription_account_idx ON subscription (account_id, starts_at DESC)
    WHERE account_id IS NOT NULL;
CREATE INDEX subscription_type_idx ON subscription (subscription_type_id);

-- Payments and their reversals. TRANSACTION is a non-reserved word: the seed's name is legal.
CREATE TABLE transaction (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id bigint NOT NULL REFERENCES subscription (id),
    kind            text NOT NULL CHECK (kind IN ('purchase', 'renewal', 'refund', 'cancellation')),
    amount_minor    bigint NOT NULL,
    currency        char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- The payment provider's id: a retried webhook must not record a payment twice.
    provider_ref    text UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transaction_subscription_idx ON transaction (subscription_id, created_at);

INSERT INTO feature (code, name) VALUES
    ('history', 'Occupancy history'),
    ('peak_hours', 'Peak hours'),
    ('notifications', 'Occupancy notifications'),
    ('analytics', 'Business analytics');

INSERT INTO subscription_type (code, name, price_minor, period, for_accounts) VALUES
    ('free', 'Free', 0, NULL, false),
    ('premium', 'Premium', 299, interval '1 month', false),
    ('business', 'Business', 2900, interval '1 month', true);

INSERT INTO subscription_type_feature (subscription_type_id, feature_id)
SELECT t.id, f.id
FROM subscription_type t
JOIN feature f ON (t.code, f.code) IN (
    ('free', 'notifications'),
    ('premium', 'history'), ('premium', 'peak_hours'), ('premium', 'notifications'),
    ('business', 'history'), ('business', 'peak_hours'), ('business', 'analytics'));
