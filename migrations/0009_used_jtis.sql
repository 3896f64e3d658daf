-- authplane schema, version 9: the jtis of client assertions (private_key_jwt, RFC 7523), each
-- spent once across every node: the SHA-256 of the client_id and the jti, kept until the
-- assertion expires, then swept.
CREATE TABLE used_jtis (
    hash        bytea   PRIMARY KEY,
    expires_at  bigint  NOT NULL
);
CREATE INDEX used_jtis_expires_at ON used_jtis (expires_at);
