-- authplane schema, version 2: one refresh token record per grant (token family), updated in
-- place at each rotation, instead of one row per token ever issued kept until the grant expires.
-- `family` is the SHA-256 of the family secret that every generation of the grant's refresh token
-- carries; `hash` is the SHA-256 of the current token. A token of a known family that is not the
-- current one is a replay, recognised without keeping the tokens it replaced.
--
-- Existing rows: each grant's current (not rotated) token is kept and keeps working. A token of
-- the format before generations is its own family secret, so its family is its old hash, and it
-- is the family's generation 0. Rotated rows are dropped: replaying one of them afterwards is an
-- unknown token (invalid_grant) and no longer revokes its grant.

CREATE TABLE refresh_families (
    family      bytea  PRIMARY KEY,
    hash        bytea  NOT NULL,
    generation  bigint NOT NULL,
    client_id   text   NOT NULL,
    sub         text   NOT NULL,
    scope       text   NOT NULL,
    grant_id    bytea  NOT NULL,
    issued_at   bigint NOT NULL,
    expires_at  bigint NOT NULL
);

INSERT INTO refresh_families (family, hash, generation, client_id, sub, scope, grant_id, issued_at, expires_at)
SELECT hash, hash, 0, client_id, sub, scope, grant_id, issued_at, expires_at
FROM refresh_tokens
WHERE rotated_at IS NULL;

DROP TABLE refresh_tokens;
ALTER TABLE refresh_families RENAME TO refresh_tokens;
ALTER INDEX refresh_families_pkey RENAME TO refresh_tokens_pkey;
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);
CREATE INDEX refresh_tokens_grant_id ON refresh_tokens (grant_id);
