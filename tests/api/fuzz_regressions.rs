//! Replays the fuzz seeds and every crash the fuzzers ever found (fuzz/regressions/<target>/)
//! through the same harness the fuzz targets use, so a fixed crash stays fixed.

use std::path::Path;

use authplane_testkit::fuzz as h;

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            out.push(std::fs::read(e.unwrap().path()).unwrap());
        }
    }
    out
}

#[test]
fn parsers_hold_on_every_saved_input() {
    type Harness = fn(&[u8]);
    let targets: [(&str, Harness); 5] = [
        ("form", h::form),
        ("authorization", h::authorization),
        ("protocol_values", h::protocol_values),
        ("redirect_uri", h::redirect_uri),
        ("config_file", h::config_file),
    ];
    for (name, run) in targets {
        let inputs = inputs(name);
        assert!(!inputs.is_empty(), "no seeds for {name}");
        for input in inputs {
            run(&input);
        }
    }
}

#[tokio::test]
async fn the_router_holds_on_every_saved_input() {
    let app = authplane::Application::build(authplane_testkit::test_config(|_| {}))
        .await
        .unwrap();
    let inputs = inputs("http");
    assert!(!inputs.is_empty());
    for input in inputs {
        h::http(app.router(), &input).await;
    }
}
