//! The test kit (`testkit/`): `spawn_app()` for a real server on 127.0.0.1:0 with the fixture's
//! users and clients and a manual clock, the fixture's credentials, and helpers that speak the
//! protocol. Re-exported here so that every area module reads `use crate::helpers::*`.

pub use authplane_testkit::*;
