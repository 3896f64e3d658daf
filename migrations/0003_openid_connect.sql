-- authplane schema, version 3: OpenID Connect.
--
-- signing_keys: one key set for every node. The private key is sealed with the deployment's
-- --key-encryption-key (AES-256-GCM: nonce || ciphertext || tag); it is never stored in clear.
-- (alg, generation) is unique so that nodes rotating at the same moment create one successor
-- between them: the first insert wins, the others find it there.
CREATE TABLE signing_keys (
    kid                 text   PRIMARY KEY,
    alg                 text   NOT NULL,
    generation          bigint NOT NULL,
    created_at          bigint NOT NULL,
    active_from         bigint NOT NULL,
    withdrawn_at        bigint,
    public_jwk          text   NOT NULL,
    sealed_private_key  bytea  NOT NULL,
    UNIQUE (alg, generation)
);

-- What an ID token needs from the authorization: the nonce sent to authorize (codes), the login
-- session's id and the time the user entered a password (codes, grants' refresh tokens).
ALTER TABLE codes ADD COLUMN nonce text;
ALTER TABLE codes ADD COLUMN sid text;
ALTER TABLE refresh_tokens ADD COLUMN auth_time bigint;
ALTER TABLE refresh_tokens ADD COLUMN sid text;
ALTER TABLE grants ADD COLUMN auth_time bigint;
ALTER TABLE grants ADD COLUMN sid text;
-- RP-initiated logout ends the grants made under a login session.
CREATE INDEX grants_sid ON grants (sid) WHERE sid IS NOT NULL;
