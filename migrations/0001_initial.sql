-- authplane schema, version 1. Credentials are keyed by their SHA-256 (bytea, 32 bytes); no
-- credential value is ever stored. Times are Unix milliseconds (bigint), as in the code.

CREATE TABLE sessions (
    hash        bytea PRIMARY KEY,
    sub         text   NOT NULL,
    auth_time   bigint NOT NULL,
    expires_at  bigint NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE codes (
    hash               bytea PRIMARY KEY,
    client_id          text    NOT NULL,
    redirect_uri       text    NOT NULL,
    redirect_uri_given boolean NOT NULL,
    sub                text    NOT NULL,
    scope              text    NOT NULL,
    challenge          text,
    grant_id           bytea   NOT NULL,
    auth_time          bigint  NOT NULL,
    expires_at         bigint  NOT NULL,
    consumed           boolean NOT NULL DEFAULT false
);
CREATE INDEX codes_expires_at ON codes (expires_at);

CREATE TABLE grants (
    id          bytea PRIMARY KEY,
    client_id   text   NOT NULL,
    sub         text   NOT NULL,
    scope       text   NOT NULL,
    created_at  bigint NOT NULL,
    expires_at  bigint NOT NULL,
    revoked_at  bigint
);
CREATE INDEX grants_expires_at ON grants (expires_at);

CREATE TABLE access_tokens (
    hash        bytea PRIMARY KEY,
    client_id   text   NOT NULL,
    sub         text,
    scope       text   NOT NULL,
    grant_id    bytea,
    issued_at   bigint NOT NULL,
    expires_at  bigint NOT NULL,
    revoked_at  bigint
);
CREATE INDEX access_tokens_expires_at ON access_tokens (expires_at);
CREATE INDEX access_tokens_grant_id ON access_tokens (grant_id) WHERE grant_id IS NOT NULL;

CREATE TABLE refresh_tokens (
    hash        bytea PRIMARY KEY,
    client_id   text   NOT NULL,
    sub         text   NOT NULL,
    scope       text   NOT NULL,
    grant_id    bytea  NOT NULL,
    issued_at   bigint NOT NULL,
    expires_at  bigint NOT NULL,
    rotated_at  bigint
);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);
CREATE INDEX refresh_tokens_grant_id ON refresh_tokens (grant_id);
