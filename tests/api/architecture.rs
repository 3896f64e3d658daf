//! The shape: handlers in `src/http/` parse, call a service and map the result. They never reach
//! for the store, the caches or credential hashing, which belong to the services.

#[test]
fn handlers_do_not_touch_stores_caches_or_crypto() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let forbidden = [
        "crate::store",
        "crate::cache",
        "crate::crypto",
        "hash_token",
        "Store",
        "RecordCache",
        "sha2",
        "argon2",
    ];
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for word in forbidden {
            assert!(!text.contains(word), "{} mentions {word}", path.display());
        }
        checked += 1;
    }
    assert!(checked >= 7, "the handler files were found");
}
