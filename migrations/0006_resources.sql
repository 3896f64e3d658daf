-- authplane schema, version 6: resource indicators (RFC 8707). The resources an authorization
-- named (codes, grants, the grant's refresh token) and an access token's audience, each a
-- space-separated list of absolute URIs; empty when none was asked for (the audience is then
-- the issuer).
ALTER TABLE codes ADD COLUMN resources text NOT NULL DEFAULT '';
ALTER TABLE grants ADD COLUMN resources text NOT NULL DEFAULT '';
ALTER TABLE refresh_tokens ADD COLUMN resources text NOT NULL DEFAULT '';
ALTER TABLE access_tokens ADD COLUMN resources text NOT NULL DEFAULT '';
