-- authplane schema, version 4: what users approved for third-party clients (consent), one row
-- per user and client holding the scopes approved so far.
CREATE TABLE consents (
    sub         text   NOT NULL,
    client_id   text   NOT NULL,
    scope       text   NOT NULL,
    granted_at  bigint NOT NULL,
    PRIMARY KEY (sub, client_id)
);
