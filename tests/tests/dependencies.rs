//! The crate layering, checked against `cargo metadata`: every dependency between
//! the workspace's own crates must be one of the allowed arrows below. The same
//! picture is drawn in docs/architecture.md ("Layers").
//!
//! Edges (the gateway, the workers) call use cases (`case-workflows`), never each
//! other; use cases call the domain and the store; the runtime is plumbing that
//! knows no tables.

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
};

use serde_json::Value;

/// Crate → the workspace crates it may depend on (normal and build dependencies).
/// Dev-dependencies are not checked: tests may reach further.
const ALLOWED: &[(&str, &[&str])] = &[
    // Pure libraries.
    ("case-domain", &[]),
    ("data-protection", &[]),
    ("local-postgres", &[]),
    ("webhooks", &["case-domain"]),
    ("carrier-adapter", &["case-domain"]),
    // The store: all SQL.
    ("case-store", &["case-domain"]),
    // Plumbing: config, tracing, HTTP and worker loops. No store, no tables.
    ("service-runtime", &["case-domain", "webhooks"]),
    // The use cases.
    (
        "case-workflows",
        &[
            "case-domain",
            "case-store",
            "data-protection",
            "carrier-adapter",
            "webhooks",
        ],
    ),
    // The store's queues as sources for the runtime's worker loops.
    (
        "case-queues",
        &["service-runtime", "case-store", "case-domain"],
    ),
    // Edges and workers: use cases, domain, store, plumbing, queue sources; never each other.
    (
        "gateway",
        &[
            "case-workflows",
            "case-domain",
            "case-store",
            "data-protection",
            "service-runtime",
            "webhooks",
        ],
    ),
    (
        "identity-verification",
        &[
            "case-queues",
            "case-workflows",
            "case-domain",
            "case-store",
            "data-protection",
            "service-runtime",
            "carrier-adapter",
        ],
    ),
    (
        "risk-assessment",
        &[
            "case-queues",
            "case-workflows",
            "case-domain",
            "case-store",
            "service-runtime",
            "carrier-adapter",
        ],
    ),
    (
        "provisioning",
        &[
            "case-queues",
            "case-workflows",
            "case-domain",
            "case-store",
            "service-runtime",
            "carrier-adapter",
        ],
    ),
    (
        "case-timers",
        &[
            "case-queues",
            "case-workflows",
            "case-domain",
            "case-store",
            "service-runtime",
            "carrier-adapter",
        ],
    ),
    (
        "webhook-worker",
        &[
            "case-queues",
            "case-workflows",
            "case-domain",
            "case-store",
            "data-protection",
            "service-runtime",
            "carrier-adapter",
            "webhooks",
        ],
    ),
    // The carrier's double talks to the product only over HTTP.
    (
        "carrier-sim",
        &["case-domain", "service-runtime", "webhooks"],
    ),
    // The bench drives HTTP and seeds history with SQL; `--start-stack` starts the
    // product as separate processes through the system tests' harness (wiring).
    ("bench", &["case-domain", "case-store", "system-tests"]),
];

/// Crates that may depend on anything in the workspace: the binary that wires every
/// service together, and the cross-service tests.
const WIRING: &[&str] = &["reactivation", "system-tests"];

/// Service crates: no crate but the wiring may depend on one.
const SERVICES: &[&str] = &[
    "gateway",
    "identity-verification",
    "risk-assessment",
    "provisioning",
    "case-timers",
    "webhook-worker",
    "carrier-sim",
];

fn workspace_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata is JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let members: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_owned())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .map(|d| d["name"].as_str().expect("dependency name").to_owned())
                .filter(|name| members.contains(name))
                .collect();
            (p["name"].as_str().expect("name").to_owned(), deps)
        })
        .collect()
}

#[test]
fn every_dependency_between_our_crates_is_an_allowed_arrow() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(from, to)| (*from, to.iter().copied().collect()))
        .collect();
    let mut wrong = Vec::new();
    for (krate, deps) in workspace_dependencies() {
        if WIRING.contains(&krate.as_str()) {
            continue;
        }
        let Some(may) = allowed.get(krate.as_str()) else {
            wrong.push(format!(
                "{krate}: not in the layer table; add its allowed arrows"
            ));
            continue;
        };
        for dep in deps {
            if !may.contains(dep.as_str()) {
                wrong.push(format!("{krate} -> {dep}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies that break the layering:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn the_layer_table_itself_keeps_services_apart_and_the_runtime_tableless() {
    for (krate, deps) in ALLOWED {
        for dep in *deps {
            assert!(
                !SERVICES.contains(dep),
                "{krate} may not depend on the service {dep}"
            );
        }
    }
    let runtime = ALLOWED
        .iter()
        .find(|(k, _)| *k == "service-runtime")
        .expect("runtime");
    assert!(
        !runtime.1.contains(&"case-store"),
        "the runtime must know no tables"
    );
    assert!(!runtime.1.contains(&"case-workflows"));
}
