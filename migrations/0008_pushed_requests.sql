-- authplane schema, version 8: pushed authorization requests (RFC 9126). A request's authorize
-- parameters (form-encoded, as checked at the push), keyed by the SHA-256 of its request_uri,
-- used once (consumed) by the node that issues the code, and swept after expires_at.
CREATE TABLE pushed_requests (
    hash        bytea   PRIMARY KEY,
    client_id   text    NOT NULL,
    params      text    NOT NULL,
    expires_at  bigint  NOT NULL,
    consumed    boolean NOT NULL DEFAULT false
);
CREATE INDEX pushed_requests_expires_at ON pushed_requests (expires_at);
