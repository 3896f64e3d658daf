-- authplane schema, version 7: DPoP (RFC 9449). The thumbprint (RFC 7638) of the key a token is
-- bound to: access tokens (cnf.jkt), refresh token families of public clients, and codes whose
-- authorize request named dpop_jkt. NULL: not bound.
ALTER TABLE codes ADD COLUMN dpop_jkt text;
ALTER TABLE refresh_tokens ADD COLUMN jkt text;
ALTER TABLE access_tokens ADD COLUMN jkt text;
