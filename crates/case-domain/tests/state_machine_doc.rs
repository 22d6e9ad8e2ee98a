//! Keeps `docs/state-machine.md` true to the transition table.
//!
//! The region between the `BEGIN GENERATED` and `END GENERATED` markers holds the
//! Mermaid diagram ([`case_domain::mermaid_state_diagram`]) and a table of every row of
//! [`case_domain::TRANSITIONS`]. This test fails when the region differs from what the
//! code generates; `UPDATE_DOCS=1 cargo test -p case-domain --test state_machine_doc`
//! rewrites the region instead (the rest of the document is left as it is).

use std::{fmt::Write as _, fs, path::PathBuf};

use case_domain::{CaseEvent, CaseState, TRANSITIONS, mermaid_state_diagram};

const BEGIN: &str = "<!-- BEGIN GENERATED: mermaid (cargo test -p case-domain --test state_machine_doc; UPDATE_DOCS=1 rewrites) -->";
const END: &str = "<!-- END GENERATED -->";
const HOW_TO_FIX: &str =
    "run `UPDATE_DOCS=1 cargo test -p case-domain --test state_machine_doc` and commit the result";

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/state-machine.md")
}

fn read_doc() -> String {
    let path = doc_path();
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The region's text as the code generates it: the Mermaid fence, a blank line, the
/// table, a blank line (so the table ends before the closing marker).
fn expected_region() -> String {
    let mut out = String::from("```mermaid\n");
    out.push_str(&mermaid_state_diagram());
    out.push_str("```\n\n");
    out.push_str("| from | event | to | roles |\n");
    out.push_str("|---|---|---|---|\n");
    for t in TRANSITIONS {
        let roles: Vec<&str> = t.roles.iter().map(|r| r.as_str()).collect();
        writeln!(
            out,
            "| `{}` | `{}` | `{}` | {} |",
            t.from,
            t.event,
            t.to,
            roles.join(", ")
        )
        .expect("writing to a String cannot fail");
    }
    out.push('\n');
    out
}

/// Splits the document into (text up to and including the BEGIN line, the region,
/// the text from the END line on).
fn split(doc: &str) -> (&str, &str, &str) {
    assert_eq!(
        doc.matches(BEGIN).count(),
        1,
        "docs/state-machine.md must contain the line `{BEGIN}` exactly once"
    );
    assert_eq!(
        doc.matches(END).count(),
        1,
        "docs/state-machine.md must contain the line `{END}` exactly once"
    );
    let begin = doc.find(BEGIN).expect("counted above");
    let after_begin = begin + BEGIN.len();
    assert!(
        doc[after_begin..].starts_with('\n'),
        "the BEGIN marker must be alone on its line"
    );
    let start = after_begin + 1;
    let end = doc.find(END).expect("counted above");
    assert!(
        end >= start,
        "the END marker must come after the BEGIN marker"
    );
    (&doc[..start], &doc[start..end], &doc[end..])
}

#[test]
fn the_generated_region_matches_the_transition_table() {
    let doc = read_doc();
    let (before, region, after) = split(&doc);
    let expected = expected_region();
    if std::env::var("UPDATE_DOCS").is_ok_and(|v| v == "1") {
        if region != expected {
            let path = doc_path();
            fs::write(&path, format!("{before}{expected}{after}"))
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        return;
    }
    assert!(
        region == expected,
        "docs/state-machine.md is out of date with case_domain::TRANSITIONS: {HOW_TO_FIX}.\n\
         --- expected region ---\n{expected}--- region in the document ---\n{region}---"
    );
}

#[test]
fn the_hand_written_part_explains_every_state_and_event() {
    let doc = read_doc();
    let (before, _, after) = split(&doc);
    let prose = format!("{before}{after}");
    let missing_states: Vec<&str> = CaseState::ALL
        .iter()
        .map(|s| s.as_str())
        .filter(|name| !prose.contains(&format!("`{name}`")))
        .collect();
    let missing_events: Vec<&str> = CaseEvent::ALL
        .iter()
        .map(|e| e.as_str())
        .filter(|name| !prose.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing_states.is_empty() && missing_events.is_empty(),
        "docs/state-machine.md (outside the generated region) does not explain these \
         states {missing_states:?} and events {missing_events:?}: add them by hand"
    );
}
