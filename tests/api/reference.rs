//! docs/reference.md against the code: the settings are the flags of `authplane serve` (and the
//! other way round), the endpoints marked `yes` are routed, the metrics of section 5 are exported
//! from start-up with their types, and every exported metric is documented.

use std::collections::{BTreeMap, BTreeSet};

use authplane::config::Cli;
use clap::CommandFactory;
use reqwest::{Method, StatusCode};

use crate::helpers::*;

fn reference() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/reference.md")).unwrap()
}

/// The table rows of the section whose heading starts with `## {number}`, as trimmed cells.
fn rows(doc: &str, number: &str) -> Vec<Vec<String>> {
    let heading = format!("## {number} ");
    let section = doc
        .split("\n## ")
        .find(|s| format!("## {s}").starts_with(&heading))
        .unwrap_or_else(|| panic!("no section {number}"));
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The `code` spans of a cell.
fn codes(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

#[test]
fn every_setting_is_a_flag_and_every_flag_is_documented() {
    let doc = reference();
    let mut documented = BTreeSet::new();
    let mut planned = BTreeSet::new();
    for row in rows(&doc, "1.") {
        let flag = codes(&row[0]).remove(0);
        match row.last().map(String::as_str) {
            Some("yes") => documented.insert(flag),
            Some("planned") => planned.insert(flag),
            other => panic!("{flag}: implemented must be yes or planned, not {other:?}"),
        };
    }
    let cli = Cli::command();
    let serve = cli.find_subcommand("serve").unwrap();
    let flags: BTreeSet<String> = serve
        .get_arguments()
        .filter_map(|a| a.get_long())
        .map(|l| format!("--{l}"))
        .collect();
    let missing: Vec<_> = documented.difference(&flags).collect();
    assert!(
        missing.is_empty(),
        "documented as implemented but not a flag: {missing:?}"
    );
    let undocumented: Vec<_> = flags.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "flags missing from docs/reference.md: {undocumented:?}"
    );
    let early: Vec<_> = planned.intersection(&flags).collect();
    assert!(early.is_empty(), "implemented but marked planned: {early:?}");
}

#[tokio::test]
async fn every_implemented_endpoint_answers_on_its_methods() {
    let doc = reference();
    let app = spawn_app().await;
    let mut checked = 0;
    for row in rows(&doc, "3.") {
        if row.last().map(String::as_str) != Some("yes") {
            continue;
        }
        // "`GET`, `POST /auth/userinfo`" or "`GET /healthz`, `GET /readyz`".
        let spans = codes(&row[0]);
        let mut methods = Vec::new();
        for span in spans {
            let mut words = span.split_whitespace();
            let first = words.next().unwrap();
            methods.push(first.to_owned());
            if let Some(path) = words.next() {
                for m in methods.drain(..) {
                    let method = Method::from_bytes(m.as_bytes()).unwrap();
                    let res = app.client.request(method, app.url(path)).send().await.unwrap();
                    assert!(
                        res.status() != StatusCode::NOT_FOUND && res.status() != StatusCode::METHOD_NOT_ALLOWED,
                        "{m} {path}: {}",
                        res.status()
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 14, "only {checked} endpoints checked");
}

#[tokio::test]
async fn the_metrics_of_section_5_are_exported_from_start_up_and_every_export_is_documented() {
    let doc = reference();
    let mut documented = BTreeMap::new();
    for section in ["5.", "5b.", "9."] {
        for row in rows(&doc, section) {
            for name in codes(&row[0]) {
                documented.insert(name, (section, row[1].clone()));
            }
        }
    }
    let app = spawn_app().await;
    let text = app.metrics_text().await;
    let exported: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned())
        })
        .collect();
    for (name, (section, kind)) in &documented {
        if *section == "5." {
            assert_eq!(
                exported.get(name),
                Some(kind),
                "{name} ({kind}) not exported from start-up"
            );
        }
    }
    for (name, kind) in &exported {
        let Some((_, documented_kind)) = documented.get(name) else {
            panic!("{name} is exported but not in docs/reference.md sections 5, 5b or 9");
        };
        assert_eq!(documented_kind, kind, "{name}");
    }
}
