//! `cache-memory`: resident memory per entry of the server's record cache (moka, through
//! `authplane::cache::RecordCache`) or of the memory store, measured as the growth of this
//! process's RSS while N realistic entries are inserted, divided by N. Allocator slack and moka's
//! own structures are included, as they are in the server.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authplane::cache::RecordCache;
use authplane::crypto;
use authplane::domain::{GrantId, Scope, Timestamp, TokenHash};
use authplane::store::memory::MemoryStore;
use authplane::store::{AccessTokenRecord, Store, StoreError};
use authplane::telemetry::Metrics;
use serde::Serialize;

use crate::MemoryKind;
use crate::cpu::rss_bytes;

#[derive(Serialize)]
struct Report {
    kind: &'static str,
    entries_inserted: u64,
    entries_held: u64,
    rss_before_bytes: u64,
    rss_after_bytes: u64,
    bytes_per_entry: f64,
    fill_seconds: f64,
}

/// A user access token as the code grant issues it: the client id and subject are shared with
/// the registries (`Arc<str>`), the scope is the grant's own allocation (one per record here, the
/// worst case: a grant's tokens share theirs).
fn record(i: u64, now: Timestamp, client_id: &Arc<str>, sub: &Arc<str>) -> AccessTokenRecord {
    AccessTokenRecord {
        jkt: None,
        resources: Default::default(),
        hash: crypto::hash_token(&i.to_string()),
        client_id: Arc::clone(client_id),
        sub: Some(Arc::clone(sub)),
        scope: Scope::parse("openid profile email").unwrap_or_default(),
        grant_id: Some(GrantId(i.to_le_bytes().repeat(2).try_into().unwrap_or([0; 16]))),
        issued_at: now,
        expires_at: now.plus(Duration::from_secs(900)),
        revoked_at: None,
    }
}

pub async fn run(entries: u64, kind: MemoryKind, json: bool) -> anyhow::Result<ExitCode> {
    let metrics = Metrics::new();
    let now = Timestamp::from_millis(1_700_000_000_000);
    let ttl = Duration::from_secs(3600);
    let (client_id, sub): (Arc<str>, Arc<str>) = (Arc::from("demo-app"), Arc::from("u-alice"));
    let before = rss_bytes(None).unwrap_or(0);
    let started = Instant::now();
    let (name, held, after) = match kind {
        MemoryKind::Record => {
            let cache = RecordCache::<TokenHash, AccessTokenRecord>::new("access_tokens", entries, ttl, &metrics);
            for i in 0..entries {
                let r = record(i, now, &client_id, &sub);
                cache.insert(r.hash, r);
            }
            ("record", cache.entry_count(), rss_bytes(None).unwrap_or(0))
        }
        MemoryKind::Negative => {
            let cache = RecordCache::<TokenHash, AccessTokenRecord>::new("access_tokens", entries, ttl, &metrics);
            for i in 0..entries {
                let key = crypto::hash_token(&i.to_string());
                cache.get_or_load(&key, || async { Ok::<_, StoreError>(None) }).await?;
            }
            ("negative", cache.entry_count(), rss_bytes(None).unwrap_or(0))
        }
        MemoryKind::Store => {
            let store = MemoryStore::new();
            for i in 0..entries {
                store.insert_access_token(&record(i, now, &client_id, &sub)).await?;
            }
            let n = store.len(authplane::store::RecordKind::AccessTokens) as u64;
            ("store", n, rss_bytes(None).unwrap_or(0))
        }
    };
    let report = Report {
        kind: name,
        entries_inserted: entries,
        entries_held: held,
        rss_before_bytes: before,
        rss_after_bytes: after,
        bytes_per_entry: after.saturating_sub(before) as f64 / held.max(1) as f64,
        fill_seconds: started.elapsed().as_secs_f64(),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}: {} entries held of {} inserted; RSS {:.1} MiB → {:.1} MiB: {:.0} bytes per entry (filled in {:.1}s)",
            report.kind,
            report.entries_held,
            report.entries_inserted,
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            report.bytes_per_entry,
            report.fill_seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}
