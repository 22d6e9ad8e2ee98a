//! Retention with crypto-shredding, end to end (issue 15): a finished case is aged
//! past its retention periods (its end time moved back: the injected clock), then
//! `reactivation retention run` deletes its personal data. Afterwards its name and
//! ID number are unreadable (the data key is gone; unmasking is refused cleanly),
//! its evidence and explanations are gone, the regulator's dossier still has the
//! timeline, decisions and complaints with the personal data marked deleted,
//! `reactivation audit verify` passes and the event log is the same rows. A dry run
//! changes nothing and a second run is a no-op.

use std::time::Duration;

use serde_json::json;
use system_tests::{Stack, TestSubscriber};

const SETTLE: Duration = Duration::from_secs(30);

/// Runs `reactivation retention run` (with `extra` arguments): (success, output).
fn retention_run(stack: &Stack, extra: &[&str]) -> (bool, String) {
    let args: Vec<&str> = ["retention", "run"].iter().chain(extra).copied().collect();
    stack.cli(&args, &[])
}

async fn scalar(stack: &Stack, sql: &str, case: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(case)
        .fetch_one(&stack.pool)
        .await
        .unwrap()
}

async fn event_rows(stack: &Stack) -> Vec<String> {
    sqlx::query_scalar("SELECT row_to_json(e)::text FROM case_events e ORDER BY seq")
        .fetch_all(&stack.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_finished_case_past_retention_is_shredded_and_its_dossier_survives() {
    let stack = Stack::start().await;
    stack.create_agent("boss", &["supervisor"]);
    let s = TestSubscriber::clean(730);
    stack.add_subscriber(&s).await;
    let (case, token) = stack.open_verified_case(&s).await;
    stack
        .wait_for_state(&case, &token, "reactivated", SETTLE)
        .await;
    let (status, body) = stack
        .call(
            stack
                .http
                .post(format!(
                    "{}/v1/cases/{case}/complaints",
                    stack.url("gateway")
                ))
                .bearer_auth(&token)
                .json(&json!({"channel": "web", "text": "I was cut off for a week"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // Material the subscriber gave during the case (written as the store would).
    sqlx::query(
        "INSERT INTO case_evidence (id, case_id, media_type, size_bytes, sha256, content)
         VALUES (gen_random_uuid(), $1::uuid, 'application/pdf', 8, sha256('%PDF-1.4'), '%PDF-1.4')",
    )
    .bind(&case)
    .execute(&stack.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO case_explanations (id, case_id, statement, counterparties)
         VALUES (gen_random_uuid(), $1::uuid, 'my brother', '[{\"msisdn\": \"+8613900000001\", \"relation\": \"brother\", \"purpose\": \"family\"}]')",
    )
    .bind(&case)
    .execute(&stack.pool)
    .await
    .unwrap();

    // New cases get their own data key; before retention an unmask works.
    assert_eq!(
        scalar(
            &stack,
            "SELECT count(*) FROM case_data_keys WHERE case_id = $1::uuid",
            &case
        )
        .await,
        1
    );
    let boss = stack.login("boss").await;
    let unmask = |token: String| {
        stack.call(
            stack
                .http
                .post(format!(
                    "{}/v1/agent/cases/{case}/unmask",
                    stack.url("gateway")
                ))
                .bearer_auth(token)
                .json(&json!({"reason": "regulator inquiry 12300-2026-0001"})),
        )
    };
    let (status, clear) = unmask(boss.clone()).await;
    assert_eq!(status, 200, "{clear}");
    assert_eq!(clear["id_number"], s.id_number.as_str());

    // The clock: the case ended three years ago.
    sqlx::query(
        "UPDATE reactivation_cases SET state_entered_at = now() - interval '1095 days' WHERE id = $1::uuid",
    )
    .bind(&case)
    .execute(&stack.pool)
    .await
    .unwrap();
    let events_before = event_rows(&stack).await;

    // A dry run counts and changes nothing.
    let (ok, out) = retention_run(&stack, &["--dry-run"]);
    assert!(ok, "{out}");
    assert!(out.contains("identity: 1 cases"), "{out}");
    assert!(out.contains("evidence: 1 cases"), "{out}");
    assert_eq!(
        scalar(
            &stack,
            "SELECT count(*) FROM case_data_keys WHERE case_id = $1::uuid",
            &case
        )
        .await,
        1
    );
    assert_eq!(
        scalar(
            &stack,
            "SELECT count(*) FROM case_evidence WHERE case_id = $1::uuid",
            &case
        )
        .await,
        1
    );

    let (ok, out) = retention_run(&stack, &["--batch", "50"]);
    assert!(ok, "{out}");
    assert!(out.contains("identity: 1 cases ended before"), "{out}");

    // Identity unreadable: the data key is gone, unmasking is refused cleanly.
    assert_eq!(
        scalar(
            &stack,
            "SELECT count(*) FROM case_data_keys WHERE case_id = $1::uuid",
            &case
        )
        .await,
        0
    );
    let (status, problem) = unmask(boss.clone()).await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["type"]
            .as_str()
            .unwrap_or("")
            .ends_with("personal-data-deleted"),
        "{problem}"
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or("")
            .contains("deleted on"),
        "{problem}"
    );
    // Evidence, explanations and codes are gone.
    for table in ["case_evidence", "case_explanations", "otp_codes"] {
        assert_eq!(
            scalar(
                &stack,
                &format!("SELECT count(*) FROM {table} WHERE case_id = $1::uuid"),
                &case
            )
            .await,
            0,
            "{table}"
        );
    }

    // The regulator's view: everything but the person, marked deleted.
    let (status, dossier) = stack
        .call(
            stack
                .http
                .get(format!(
                    "{}/v1/agent/cases/{case}/dossier",
                    stack.url("gateway")
                ))
                .bearer_auth(&boss),
        )
        .await;
    assert_eq!(status, 200, "{dossier}");
    let marker = dossier["parties"]["subscriber"]["full_name"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(marker.starts_with("deleted on "), "{dossier}");
    assert_eq!(
        dossier["parties"]["subscriber"]["id_number"],
        marker.as_str()
    );
    let gone = &dossier["personal_data_deletion"];
    for kind in ["identity", "evidence", "explanations", "codes"] {
        assert!(
            gone[format!("{kind}_deleted_on")].is_string(),
            "{kind}: {dossier}"
        );
    }
    assert_eq!(gone["evidence_files_deleted"], 1);
    let timeline = dossier["timeline"].as_array().unwrap();
    let transitions = scalar(
        &stack,
        "SELECT count(*) FROM case_events WHERE case_id = $1::uuid",
        &case,
    )
    .await;
    assert_eq!(timeline.len() as i64, transitions);
    assert_eq!(timeline.last().unwrap()["to"], "reactivated");
    assert_eq!(dossier["complaints"][0]["text"], "I was cut off for a week");
    assert_eq!(dossier["facts"]["risk_tier"], "low");
    let text = dossier.to_string();
    assert!(
        !text.contains(&s.id_number[14..]) && !text.contains(&s.full_name),
        "{text}"
    );

    // The audit chain and the event log are intact.
    let (ok, report) = stack.verify_audit();
    assert!(ok, "{report}");
    assert_eq!(event_rows(&stack).await, events_before);

    // A second run is a no-op.
    let audit_rows = scalar(
        &stack,
        "SELECT count(*) FROM audit_log WHERE $1 <> ''",
        &case,
    )
    .await;
    let (ok, out) = retention_run(&stack, &[]);
    assert!(ok, "{out}");
    for kind in ["codes", "explanations", "evidence", "identity"] {
        assert!(
            out.contains(&format!("{kind}: 0 cases ended before")),
            "{out}"
        );
    }
    assert_eq!(
        scalar(
            &stack,
            "SELECT count(*) FROM audit_log WHERE $1 <> ''",
            &case
        )
        .await,
        audit_rows
    );
    // The timers service ran its scheduled pass at start and reports it in /metrics.
    let last_pass = stack
        .metric("timers", "retention_last_pass_timestamp_seconds", &[])
        .await;
    assert!(last_pass > 0.0, "no retention pass in the timers' metrics");
}
