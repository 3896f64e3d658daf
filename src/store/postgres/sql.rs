//! Every statement the store runs, in one place. Statements that change what another node may have
//! cached send `NOTIFY` on [`CHANNEL`] in the same statement, so the notification goes out exactly
//! when the change commits.

/// The channel name as a literal, so that the statements below can `concat!` it.
macro_rules! channel {
    () => {
        "authplane_invalidate"
    };
}

/// The columns of an access token row as every insert writes them (`revoked_at` aside).
macro_rules! access_columns {
    () => {
        "hash, client_id, sub, scope, grant_id, issued_at, expires_at, resources, jkt"
    };
}

/// The NOTIFY channel of cross-node cache invalidation.
pub const CHANNEL: &str = channel!();

/// Subscribes the listener's connection to [`CHANNEL`].
pub const LISTEN: &str = concat!("LISTEN ", channel!());

pub const PING: &str = "SELECT 1";

// === migrations ===

pub const LOCK_MIGRATIONS: &str = "SELECT pg_advisory_lock($1)";
pub const UNLOCK_MIGRATIONS: &str = "SELECT pg_advisory_unlock($1)";
pub const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS authplane_migrations (
                     version integer PRIMARY KEY,
                     applied_at timestamptz NOT NULL DEFAULT now())";
pub const MIGRATION_APPLIED: &str = "SELECT 1 FROM authplane_migrations WHERE version = $1";
pub const RECORD_MIGRATION: &str = "INSERT INTO authplane_migrations (version) VALUES ($1)";

// === sessions ===

pub const INSERT_SESSION: &str = "INSERT INTO sessions (hash, sub, auth_time, expires_at) VALUES ($1, $2, $3, $4)";
pub const GET_SESSION: &str = "SELECT * FROM sessions WHERE hash = $1";
pub const DELETE_SESSION: &str = concat!(
    "WITH d AS (DELETE FROM sessions WHERE hash = $1 RETURNING 1)
                 SELECT pg_notify('",
    channel!(),
    "', $2) FROM d"
);

// === codes ===

pub const INSERT_CODE: &str =
    "INSERT INTO codes (hash, client_id, redirect_uri, redirect_uri_given, sub, scope, challenge, grant_id,
                                auth_time, expires_at, nonce, sid, resources, dpop_jkt)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
/// Of concurrent callers on any nodes exactly one gets the row back.
pub const CONSUME_CODE: &str = "UPDATE codes SET consumed = true WHERE hash = $1 AND NOT consumed RETURNING *";
pub const GET_CODE: &str = "SELECT * FROM codes WHERE hash = $1";

// === pushed authorization requests ===

pub const INSERT_PUSHED: &str =
    "INSERT INTO pushed_requests (hash, client_id, params, expires_at) VALUES ($1, $2, $3, $4)";
pub const GET_PUSHED: &str = "SELECT * FROM pushed_requests WHERE hash = $1";
/// Of concurrent callers on any nodes exactly one gets a row back.
/// A pushed request going through a login or consent: its parameters and a later expiry, while
/// it is unused.
pub const RESUME_PUSHED: &str =
    "UPDATE pushed_requests SET params = $2, expires_at = $3 WHERE hash = $1 AND NOT consumed RETURNING 1";
pub const CONSUME_PUSHED: &str =
    "UPDATE pushed_requests SET consumed = true WHERE hash = $1 AND NOT consumed RETURNING 1";

// === client assertions ===

/// Of concurrent callers on any nodes exactly one gets a row back.
pub const SPEND_JTI: &str =
    "INSERT INTO used_jtis (hash, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1";

// === grants and tokens ===

pub const INSERT_ACCESS: &str = concat!(
    "INSERT INTO access_tokens (",
    access_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
);

/// A code grant's records in one statement (one round trip, atomic as any statement is): the grant
/// (an existing one, a tombstone from a racing code replay, is kept as it is), its access token
/// and, when `$20` is not null, its refresh token family.
pub const INSERT_GRANT_TOKENS: &str = concat!(
    "WITH g AS (
        INSERT INTO grants (id, client_id, sub, scope, created_at, expires_at, revoked_at, auth_time, sid, resources)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING
    ), a AS (
        INSERT INTO access_tokens (",
    access_columns!(),
    ") VALUES ($11, $12, $13, $14, $15, $16, $17, $18, $19)
    )
    INSERT INTO refresh_tokens (family, hash, generation, client_id, sub, scope, grant_id, issued_at, expires_at,
                                auth_time, sid, resources, jkt)
    SELECT $20::bytea, $21::bytea, $22::bigint, $23::text, $24::text, $25::text, $26::bytea, $27::bigint,
           $28::bigint, $29::bigint, $30::text, $31::text, $32::text
    WHERE $20::bytea IS NOT NULL"
);

pub const GET_ACCESS: &str = "SELECT * FROM access_tokens WHERE hash = $1";
pub const GET_REFRESH: &str = "SELECT * FROM refresh_tokens WHERE family = $1";
pub const GET_GRANT: &str = "SELECT * FROM grants WHERE id = $1";

/// A refresh token's rotation in one statement (one round trip): the family's row is replaced
/// only if its current token is still the presented one (`$2`). A concurrent rotation waits for
/// the row lock, then re-reads the row and finds another token current, so of N callers on any
/// nodes exactly one wins. Only then is the access token inserted and the other nodes told
/// (NOTIFY is delivered at commit). No row back: the rotation lost.
pub const ROTATE_REFRESH: &str = concat!(
    "WITH won AS (
        UPDATE refresh_tokens SET hash = $3, generation = $4, issued_at = $5
        WHERE family = $1 AND hash = $2 RETURNING 1
    ), a AS (
        INSERT INTO access_tokens (",
    access_columns!(),
    ")
        SELECT $6::bytea, $7::text, $8::text, $9::text, $10::bytea, $11::bigint, $12::bigint, $13::text, $14::text
        FROM won
    )
    SELECT pg_notify('",
    channel!(),
    "', $15) FROM won"
);
pub const REFRESH_EXISTS: &str = "SELECT 1 FROM refresh_tokens WHERE family = $1";

pub const REVOKE_ACCESS: &str = concat!(
    "WITH u AS (UPDATE access_tokens SET revoked_at = $2 WHERE hash = $1 AND revoked_at IS NULL RETURNING 1)
                 SELECT pg_notify('",
    channel!(),
    "', $3) FROM u"
);

/// A revoked record of a token that was never stored (a client_credentials JWT access token),
/// kept until the token's expiry; revoking it again keeps the first revocation time.
pub const REVOKE_UNSTORED_ACCESS: &str = concat!(
    "WITH up AS (
        INSERT INTO access_tokens (",
    access_columns!(),
    ", revoked_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        ON CONFLICT (hash) DO UPDATE SET revoked_at = COALESCE(access_tokens.revoked_at, EXCLUDED.revoked_at)
        RETURNING 1)
     SELECT pg_notify('",
    channel!(),
    "', $11) FROM up"
);

/// One upsert: revokes the grant, or creates it revoked when a code replay races the first
/// redemption; either way the notification goes out with the commit.
pub const REVOKE_GRANT: &str = concat!(
    "WITH up AS (
                     INSERT INTO grants (id, client_id, sub, scope, created_at, expires_at, revoked_at, auth_time, sid,
                                         resources)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (id) DO UPDATE SET revoked_at = COALESCE(grants.revoked_at, EXCLUDED.revoked_at)
                     RETURNING 1)
                 SELECT pg_notify('",
    channel!(),
    "', $11) FROM up"
);

// === consent ===

pub const GET_CONSENT: &str = "SELECT * FROM consents WHERE sub = $1 AND client_id = $2";
pub const PUT_CONSENT: &str = "INSERT INTO consents (sub, client_id, scope, granted_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (sub, client_id) DO UPDATE SET scope = EXCLUDED.scope, granted_at = EXCLUDED.granted_at";

// === signing keys ===

pub const SIGNING_KEYS: &str = "SELECT * FROM signing_keys ORDER BY alg, generation";
/// The first node to insert an algorithm's next generation wins; the others get no row.
pub const INSERT_SIGNING_KEY: &str = "INSERT INTO signing_keys
        (kid, alg, generation, created_at, active_from, withdrawn_at, public_jwk, sealed_private_key)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (alg, generation) DO NOTHING";
/// `active_from` only ever moves earlier, and a withdrawal is never undone. The other nodes
/// re-read their keys at once (a rotation at once must not wait for their next refresh).
pub const UPDATE_SIGNING_KEY: &str = concat!(
    "WITH u AS (UPDATE signing_keys
        SET active_from = LEAST(active_from, COALESCE($2, active_from)),
            withdrawn_at = COALESCE(withdrawn_at, $3)
        WHERE kid = $1 RETURNING 1)
     SELECT pg_notify('",
    channel!(),
    "', 'k:') FROM u"
);
pub const DELETE_SIGNING_KEY: &str = "DELETE FROM signing_keys WHERE kid = $1";

/// Logout: the session's grants, revoked except `offline_access` ones, each announced to the
/// other nodes with the commit. The scope is a space-separated list.
pub const REVOKE_SESSION_GRANTS: &str = concat!(
    "WITH r AS (
        UPDATE grants SET revoked_at = $2
        WHERE sid = $1 AND revoked_at IS NULL AND NOT ('offline_access' = ANY (string_to_array(scope, ' ')))
        RETURNING id)
     SELECT id, pg_notify('",
    channel!(),
    "', 'g:' || encode(id, 'hex')) FROM r"
);

// === users and clients managed at runtime ===

/// Announced too: another node may have cached "no such user" for a reused `sub`.
pub const INSERT_USER: &str = concat!(
    "WITH i AS (INSERT INTO users
        (sub, username, password_hash, name, email, email_verified, disabled, not_before, created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING RETURNING 1)
     SELECT pg_notify('",
    channel!(),
    "', $11) FROM i"
);
pub const GET_USER_BY_SUB: &str = "SELECT * FROM users WHERE sub = $1";
pub const GET_USER_BY_USERNAME: &str = "SELECT * FROM users WHERE username = $1";
/// Listings page in byte order (`COLLATE "C"`), the order the service merges the config file's
/// entries in, whatever the database's collation.
pub const LIST_USERS: &str =
    r#"SELECT * FROM users WHERE sub COLLATE "C" > COALESCE($1, '') ORDER BY sub COLLATE "C" LIMIT $2"#;
/// Only the given fields change (`$3`/`$5` say whether `name`/`email` are given, as `NULL`
/// removes them); `not_before` only moves forward (GREATEST ignores a NULL). The username never
/// changes; the other nodes drop the user from their caches at commit.
pub const UPDATE_USER: &str = concat!(
    "WITH u AS (UPDATE users SET password_hash = COALESCE($2, password_hash),
                               name = CASE WHEN $3 THEN $4 ELSE name END,
                               email = CASE WHEN $5 THEN $6 ELSE email END,
                               email_verified = COALESCE($7, email_verified),
                               disabled = COALESCE($8, disabled),
                               not_before = GREATEST(not_before, $9::bigint),
                               updated_at = $10
                WHERE sub = $1 RETURNING *)
     SELECT u.*, pg_notify('",
    channel!(),
    "', $11) FROM u"
);
/// The user and its consents.
pub const DELETE_USER: &str = concat!(
    "WITH d AS (DELETE FROM users WHERE sub = $1 RETURNING 1),
          c AS (DELETE FROM consents WHERE sub = $1 AND EXISTS (SELECT 1 FROM d))
     SELECT pg_notify('",
    channel!(),
    "', $2) FROM d"
);

pub const INSERT_CLIENT: &str = concat!(
    "WITH i AS (INSERT INTO clients (client_id, metadata, registration_token, created_at, updated_at)
                VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1)
     SELECT pg_notify('",
    channel!(),
    "', $6) FROM i"
);
pub const GET_CLIENT: &str = "SELECT * FROM clients WHERE client_id = $1";
pub const LIST_CLIENTS: &str = r#"SELECT * FROM clients WHERE client_id COLLATE "C" > COALESCE($1, '')
                                   ORDER BY client_id COLLATE "C" LIMIT $2"#;
pub const UPDATE_CLIENT: &str = concat!(
    "WITH u AS (UPDATE clients SET metadata = $2, registration_token = $3, updated_at = $4
                WHERE client_id = $1 RETURNING 1)
     SELECT pg_notify('",
    channel!(),
    "', $5) FROM u"
);
/// The client and the consents given to it.
pub const DELETE_CLIENT: &str = concat!(
    "WITH d AS (DELETE FROM clients WHERE client_id = $1 RETURNING 1),
          c AS (DELETE FROM consents WHERE client_id = $1 AND EXISTS (SELECT 1 FROM d))
     SELECT pg_notify('",
    channel!(),
    "', $2) FROM d"
);

/// The cascade of a user's or client's removal: their active grants whose login was at or
/// before `$3` (`GrantRecord::authenticated_at`), revoked, each announced.
pub fn revoke_grants_of(column: &str) -> String {
    format!(
        "WITH r AS (UPDATE grants SET revoked_at = $2
                    WHERE {column} = $1 AND revoked_at IS NULL
                          AND COALESCE(auth_time, created_at) <= $3 RETURNING id)
         SELECT id, pg_notify('{CHANNEL}', 'g:' || encode(id, 'hex')) FROM r"
    )
}

/// Up to `$2` tokens of grant `$1` from `table`, deleted, their keys returned.
pub fn purge_grant_tokens(table: &str, key: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE {key} IN
                     (SELECT {key} FROM {table} WHERE grant_id = $1 LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING {key}"
    )
}

/// Up to `$2` rows of `table` that expired before `$1`, deleted. The inner select walks the expiry
/// index; SKIP LOCKED lets other nodes sweep alongside.
pub fn delete_expired(table: &str, key: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE {key} IN
                 (SELECT {key} FROM {table} WHERE expires_at < $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_notify_names_the_channel() {
        for sql in [
            DELETE_SESSION,
            ROTATE_REFRESH,
            REVOKE_ACCESS,
            REVOKE_UNSTORED_ACCESS,
            REVOKE_GRANT,
            INSERT_USER,
            UPDATE_USER,
            DELETE_USER,
            INSERT_CLIENT,
            UPDATE_CLIENT,
            DELETE_CLIENT,
        ] {
            assert!(sql.contains(&format!("pg_notify('{CHANNEL}', $")), "{sql}");
        }
        assert!(UPDATE_SIGNING_KEY.contains(&format!("pg_notify('{CHANNEL}', 'k:')")));
        let grants = format!("pg_notify('{CHANNEL}', 'g:' || encode(id, 'hex'))");
        assert!(REVOKE_SESSION_GRANTS.contains(&grants));
        assert!(revoke_grants_of("sub").contains(&grants));
        assert_eq!(LISTEN, format!("LISTEN {CHANNEL}"));
    }
}
