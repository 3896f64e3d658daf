//! One file per grant type, each an `impl TokenService` block.

mod authorization_code;
mod client_credentials;
mod refresh_token;
