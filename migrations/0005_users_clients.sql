-- authplane schema, version 5: users and clients managed at runtime (the admin API, dynamic
-- client registration). Config-file users and clients are never written here: each node reads
-- its own file. Times are Unix milliseconds.
CREATE TABLE users (
    sub             text    PRIMARY KEY,
    username        text    NOT NULL UNIQUE,
    password_hash   text    NOT NULL,
    name            text,
    email           text,
    email_verified  boolean NOT NULL DEFAULT false,
    disabled        boolean NOT NULL DEFAULT false,
    -- Sessions and tokens of the user from before this instant are void (creation, password
    -- change, disabling).
    not_before      bigint  NOT NULL,
    created_at      bigint  NOT NULL,
    updated_at      bigint  NOT NULL
);

-- metadata: the client's registered metadata as JSON, validated by the server before it is
-- written; registration_token: SHA-256 of the RFC 7592 registration access token.
CREATE TABLE clients (
    client_id           text   PRIMARY KEY,
    metadata            text   NOT NULL,
    registration_token  bytea,
    created_at          bigint NOT NULL,
    updated_at          bigint NOT NULL
);

-- The cascades of a user's or a client's removal revoke their grants without a scan.
CREATE INDEX grants_sub ON grants (sub) WHERE revoked_at IS NULL;
CREATE INDEX grants_client_id ON grants (client_id) WHERE revoked_at IS NULL;
