//! Risk rules that learn from their mistakes (issue 15, item 5), over real HTTP:
//! cases with known carrier signals are graded, an analyst approves some flagged
//! ones (labelled false positives), a supervisor replays a proposed threshold over
//! that history (counts checked against a hand computation), switches to it, and new
//! assessments record the new version; the false-positive report is per version.
//! Then: two supervisors racing from the same version (one wins), and bad inputs
//! (problem+json, nothing changes).

use std::time::Duration;

use serde_json::{Value, json};
use system_tests::{Stack, TestSubscriber};

const SETTLE: Duration = Duration::from_secs(30);

/// A subscriber numbered `n` with the carrier signals
/// (fraud-linked contacts, peak SMS per hour, international calls in 24 h).
fn with_signals(n: u32, signals: (u32, u32, u32)) -> TestSubscriber {
    TestSubscriber {
        signals,
        ..TestSubscriber::clean(n)
    }
}

/// The proposal replayed and then adopted: SMS bursts need 400 an hour to count
/// (was 100; high 800, was 500), international calls count from 5 (was 10).
fn proposal() -> Value {
    json!({
        "fraud_linked_contacts": {"medium": 1, "high": 3},
        "bulk_sms": {"medium": 400, "high": 800},
        "international_calls": {"medium": 5, "high": 50},
        "highs_for_extreme": 3,
    })
}

fn defaults() -> Value {
    json!({
        "fraud_linked_contacts": {"medium": 1, "high": 3},
        "bulk_sms": {"medium": 100, "high": 500},
        "international_calls": {"medium": 10, "high": 50},
        "highs_for_extreme": 3,
    })
}

async fn get(stack: &Stack, token: &str, path: &str) -> (u16, Value) {
    stack
        .call(
            stack
                .http
                .get(format!("{}{path}", stack.url("gateway")))
                .bearer_auth(token),
        )
        .await
}

async fn post(stack: &Stack, token: &str, path: &str, body: &Value) -> (u16, Value) {
    stack
        .call(
            stack
                .http
                .post(format!("{}{path}", stack.url("gateway")))
                .bearer_auth(token)
                .json(body),
        )
        .await
}

/// Drives `s` to security review and has `analyst` approve it (labelling each
/// reason that flagged it a false positive).
async fn approved_after_review(stack: &Stack, analyst: &str, s: &TestSubscriber) -> String {
    let (case, token, review) = stack.case_in_security_review(s).await;
    let (status, view) = stack
        .act(
            analyst,
            &case,
            "approve",
            review["version"].as_i64().unwrap(),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    stack
        .wait_for_state(&case, &token, "reactivated", SETTLE)
        .await;
    case
}

/// The rule version recorded with each assessment of the case, oldest first.
async fn recorded_versions(stack: &Stack, case: &str) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT rule_version FROM risk_assessments WHERE case_id = $1::uuid ORDER BY assessed_at",
    )
    .bind(case)
    .fetch_all(&stack.pool)
    .await
    .unwrap()
}

fn rule<'a>(report: &'a Value, code: &str) -> &'a Value {
    report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reason_code"] == code)
        .unwrap_or_else(|| panic!("no {code} in {report}"))
}

#[tokio::test]
async fn a_threshold_is_replayed_over_labelled_history_then_adopted() {
    let stack = Stack::start().await;
    stack.create_agent("analyst.one", &["security"]);
    stack.create_agent("boss", &["supervisor"]);
    let analyst = stack.login("analyst.one").await;
    let boss = stack.login("boss").await;

    // Version 1 is today's rules, seeded by the migration.
    let (status, rules) = get(&stack, &boss, "/v1/agent/risk-rules").await;
    assert_eq!(status, 200, "{rules}");
    assert_eq!(rules["current"]["version"], 1);
    assert_eq!(rules["current"]["thresholds"], defaults());
    assert_eq!(rules["current"]["created_by"], Value::Null);
    assert_eq!(rules["history"].as_array().unwrap().len(), 1);

    // History under version 1, with known signals:
    // A (0, 0, 0)     low                         -> restored at once
    // B (0, 150, 0)   medium: bulk_sms            -> approved (bulk_sms labelled)
    // C (2, 300, 15)  medium: all three           -> approved (all three labelled)
    // D (0, 0, 12)    medium: international_calls -> left in review
    // E (4, 0, 0)     high: fraud_linked_contacts -> left in review
    let a = with_signals(500, (0, 0, 0));
    stack.add_subscriber(&a).await;
    let (case_a, token_a) = stack.open_verified_case(&a).await;
    stack
        .wait_for_state(&case_a, &token_a, "reactivated", SETTLE)
        .await;
    let case_b = approved_after_review(&stack, &analyst, &with_signals(501, (0, 150, 0))).await;
    let case_c = approved_after_review(&stack, &analyst, &with_signals(502, (2, 300, 15))).await;
    let (case_d, _, _) = stack
        .case_in_security_review(&with_signals(503, (0, 0, 12)))
        .await;
    let (case_e, _, _) = stack
        .case_in_security_review(&with_signals(504, (4, 0, 0)))
        .await;
    for case in [&case_a, &case_b, &case_c, &case_d, &case_e] {
        assert_eq!(recorded_versions(&stack, case).await, [1]);
    }

    // Replay the proposal over the last 7 days. By hand, under the proposal:
    // A low; B low (150 < 400: cleared, its false positive passes); C medium
    // (fraud 2, calls 15 >= 5; SMS 300 < 400 no longer fires); D medium (12 >= 5);
    // E high.
    let (status, replay) = post(
        &stack,
        &boss,
        "/v1/agent/risk-rules/replay",
        &json!({"thresholds": proposal(), "days": 7}),
    )
    .await;
    assert_eq!(status, 200, "{replay}");
    assert_eq!(replay["current_version"], 1);
    let overall = [
        "assessments",
        "flagged_recorded",
        "flagged_proposed",
        "newly_flagged",
        "cleared",
        "false_positive_cases",
        "false_positive_cases_passing",
    ]
    .map(|k| replay[k].as_u64().unwrap_or(u64::MAX));
    // 5 cases; flagged B C D E -> C D E; B cleared; labelled B C -> B passes.
    assert_eq!(overall, [5, 4, 3, 0, 1, 2, 1], "{replay}");
    let counts = |code: &str| {
        let r = rule(&replay, code);
        [
            "fired_recorded",
            "fired_proposed",
            "false_positives",
            "false_positives_passing",
        ]
        .map(|k| r[k].as_u64().unwrap_or(u64::MAX))
    };
    // bulk_sms fired for B and C, fires for neither; both labels pass.
    assert_eq!(counts("bulk_sms"), [2, 0, 2, 2], "{replay}");
    // fraud_linked_contacts fired for C and E, still does; C's label stays flagged.
    assert_eq!(counts("fraud_linked_contacts"), [2, 2, 1, 0], "{replay}");
    // international_calls fired for C and D, still does; C's label stays flagged.
    assert_eq!(counts("international_calls"), [2, 2, 1, 0], "{replay}");
    assert_eq!(counts("confirmed_fraud"), [0, 0, 0, 0], "{replay}");

    // The replay changed nothing.
    let (_, unchanged) = get(&stack, &boss, "/v1/agent/risk-rules").await;
    assert_eq!(unchanged["current"]["version"], 1);
    assert_eq!(unchanged["history"].as_array().unwrap().len(), 1);

    // Adopt it.
    let reason = "SMS bursts of shop owners were flagged; calls abroad undercounted";
    let (status, made) = post(
        &stack,
        &boss,
        "/v1/agent/risk-rules",
        &json!({"based_on": 1, "thresholds": proposal(), "reason": reason}),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(
        (&made["version"], &made["based_on"]),
        (&json!(2), &json!(1))
    );
    assert_eq!(made["thresholds"], proposal());
    assert_eq!(made["previous"], defaults());
    let (_, rules) = get(&stack, &boss, "/v1/agent/risk-rules").await;
    assert_eq!(rules["current"]["version"], 2);
    assert_eq!(rules["current"]["thresholds"], proposal());
    assert_eq!(rules["current"]["reason"], reason);
    assert_eq!(rules["current"]["created_by_username"], "boss");
    let history: Vec<(i64, bool)> = rules["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().unwrap(),
                v["current"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(history, [(2, true), (1, false)]);

    // Audited: who, old and new thresholds, why.
    let (detail, audit_reason, actor): (Value, Option<String>, String) = sqlx::query_as(
        "SELECT detail, reason, actor_id FROM audit_log WHERE action = 'risk_rules.change'",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(audit_reason.as_deref(), Some(reason));
    assert_eq!(detail["from"], defaults());
    assert_eq!(detail["to"], proposal());
    assert_eq!(
        (&detail["based_on"], &detail["version"]),
        (&json!(1), &json!(2))
    );
    assert_eq!(
        detail["changed_rules"],
        json!(["bulk_sms", "international_calls"])
    );
    let boss_id: String = sqlx::query_scalar("SELECT id::text FROM agents WHERE username = 'boss'")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(actor, boss_id);

    // New assessments grade under version 2 and record it: B's signals pass now,
    // C's are flagged for two reasons instead of three.
    let f = with_signals(505, (0, 150, 0));
    stack.add_subscriber(&f).await;
    let (case_f, token_f) = stack.open_verified_case(&f).await;
    stack
        .wait_for_state(&case_f, &token_f, "reactivated", SETTLE)
        .await;
    assert_eq!(recorded_versions(&stack, &case_f).await, [2]);
    let case_g = approved_after_review(&stack, &analyst, &with_signals(506, (2, 300, 15))).await;
    assert_eq!(recorded_versions(&stack, &case_g).await, [2]);
    let codes: Vec<String> =
        sqlx::query_scalar("SELECT reason_codes FROM risk_assessments WHERE case_id = $1::uuid")
            .bind(&case_g)
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert_eq!(codes, ["fraud_linked_contacts", "international_calls"]);
    // Older assessments keep the version they were graded under.
    assert_eq!(recorded_versions(&stack, &case_c).await, [1]);

    // The false-positive report, one line per (rule version, reason code).
    let (status, report) = get(&stack, &boss, "/v1/agent/reports/false-positives").await;
    assert_eq!(status, 200, "{report}");
    let lines: Vec<(i64, &str, i64, i64)> = report["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["rule_version"].as_i64().unwrap(),
                l["reason_code"].as_str().unwrap(),
                l["flagged"].as_i64().unwrap(),
                l["approved"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            (1, "bulk_sms", 2, 2),
            (1, "fraud_linked_contacts", 2, 1),
            (1, "international_calls", 2, 1),
            (2, "fraud_linked_contacts", 1, 1),
            (2, "international_calls", 1, 1),
        ],
        "{report}"
    );

    // Replaying the adopted version over the same days: the recorded version-2
    // cases do not move; B (version 1) is the one cleared.
    let (status, again) = post(
        &stack,
        &boss,
        "/v1/agent/risk-rules/replay",
        &json!({"thresholds": proposal(), "days": 1}),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["current_version"], 2);
    assert_eq!(
        [
            &again["assessments"],
            &again["flagged_proposed"],
            &again["cleared"]
        ],
        [&json!(7), &json!(4), &json!(1)],
        "{again}"
    );

    let (ok, out) = stack.verify_audit();
    assert!(ok, "{out}");
}

/// A refused request: (token, path, raw body, status, problem type slug, the
/// invalid field if any).
type BadInput<'a> = (&'a str, &'a str, String, u16, &'a str, Option<&'a str>);

#[tokio::test]
async fn racing_supervisors_and_bad_inputs() {
    let stack = Stack::start().await;
    stack.create_agent("boss.one", &["supervisor"]);
    stack.create_agent("boss.two", &["supervisor"]);
    stack.create_agent("analyst.one", &["security"]);
    let one = stack.login("boss.one").await;
    let two = stack.login("boss.two").await;
    let analyst = stack.login("analyst.one").await;
    let gateway = stack.url("gateway").to_owned();

    let changes = || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM risk_rule_versions) * 1000 + (SELECT count(*) FROM audit_log WHERE action = 'risk_rules.change')",
        )
        .fetch_one(&stack.pool)
        .await
        .unwrap();
        n
    };
    assert_eq!(changes().await, 1000);

    let with = |path: &[&str], value: Value| {
        let mut t = defaults();
        let mut at = &mut t;
        for p in &path[..path.len() - 1] {
            at = &mut at[*p];
        }
        at[path[path.len() - 1]] = value;
        t
    };
    let change = |thresholds: Value| json!({"based_on": 1, "thresholds": thresholds, "reason": "tuning after review"});
    let bad: Vec<BadInput<'_>> = vec![
        (
            one.as_str(),
            "/v1/agent/risk-rules",
            change(with(&["bulk_sms", "medium"], json!(0))).to_string(),
            422,
            "validation",
            Some("thresholds.bulk_sms.medium"),
        ),
        (
            one.as_str(),
            "/v1/agent/risk-rules",
            change(with(&["bulk_sms", "medium"], json!(600))).to_string(),
            422,
            "validation",
            Some("thresholds.bulk_sms.medium"),
        ),
        (
            one.as_str(),
            "/v1/agent/risk-rules",
            change(with(&["international_calls", "high"], json!(10_001))).to_string(),
            422,
            "validation",
            Some("thresholds.international_calls.high"),
        ),
        (
            one.as_str(),
            "/v1/agent/risk-rules",
            change(with(&["highs_for_extreme"], json!(0))).to_string(),
            422,
            "validation",
            Some("thresholds.highs_for_extreme"),
        ),
        (
            one.as_str(),
            "/v1/agent/risk-rules",
            change(with(&["highs_for_extreme"], json!(4))).to_string(),
            422,
            "validation",
            Some("thresholds.highs_for_extreme"),
        ),
        (
            one.as_str(),
            "/v1/agent/risk-rules",
            json!({"based_on": 1, "thresholds": defaults(), "reason": "  "}).to_string(),
            422,
            "validation",
            Some("reason"),
        ),
        (
            one.as_str(),
            "/v1/agent/risk-rules",
            json!({"based_on": 0, "thresholds": defaults(), "reason": "tuning after review"})
                .to_string(),
            422,
            "validation",
            Some("based_on"),
        ),
        (
            one.as_str(),
            "/v1/agent/risk-rules",
            json!({"based_on": 1, "thresholds": defaults()}).to_string(),
            422,
            "schema",
            None,
        ),
        (
            one.as_str(),
            "/v1/agent/risk-rules",
            change(with(&["bulk_sms", "low"], json!(5))).to_string(),
            422,
            "schema",
            None,
        ),
        (
            one.as_str(),
            "/v1/agent/risk-rules",
            change(with(&["bulk_sms", "medium"], json!(-1))).to_string(),
            422,
            "schema",
            None,
        ),
        (
            one.as_str(),
            "/v1/agent/risk-rules",
            "{\"based_on\": 1,".into(),
            400,
            "malformed",
            None,
        ),
        (
            one.as_str(),
            "/v1/agent/risk-rules",
            json!({"based_on": 7, "thresholds": defaults(), "reason": "tuning after review"})
                .to_string(),
            409,
            "rules-changed",
            None,
        ),
        (
            analyst.as_str(),
            "/v1/agent/risk-rules",
            change(defaults()).to_string(),
            403,
            "forbidden",
            None,
        ),
        (
            one.as_str(),
            "/v1/agent/risk-rules/replay",
            json!({"thresholds": defaults(), "days": 0}).to_string(),
            422,
            "validation",
            Some("days"),
        ),
        (
            one.as_str(),
            "/v1/agent/risk-rules/replay",
            json!({"thresholds": defaults(), "days": 91}).to_string(),
            422,
            "validation",
            Some("days"),
        ),
        (
            one.as_str(),
            "/v1/agent/risk-rules/replay",
            json!({"thresholds": with(&["fraud_linked_contacts", "high"], json!(0)), "days": 7})
                .to_string(),
            422,
            "validation",
            Some("thresholds.fraud_linked_contacts.medium"),
        ),
        (
            analyst.as_str(),
            "/v1/agent/risk-rules/replay",
            json!({"thresholds": defaults(), "days": 7}).to_string(),
            403,
            "forbidden",
            None,
        ),
    ];
    for (token, path, body, status, slug, field) in bad {
        let (got, content_type, answer) = stack
            .call_raw(
                stack
                    .http
                    .post(format!("{gateway}{path}"))
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(body.clone()),
            )
            .await;
        assert_eq!(got, status, "{path} {body}: {answer}");
        assert!(
            content_type.starts_with("application/problem+json"),
            "{path} {body}: {content_type}"
        );
        let problem: Value = serde_json::from_str(&answer).unwrap();
        assert!(
            problem["type"].as_str().unwrap_or_default().ends_with(slug),
            "{path} {body}: {problem}"
        );
        if let Some(field) = field {
            assert!(
                problem["errors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["field"] == field),
                "{path} {body}: {problem}"
            );
        }
        assert_eq!(changes().await, 1000, "{path} {body} changed something");
    }
    let (status, content_type, _) = stack
        .call_raw(stack.http.get(format!("{gateway}/v1/agent/risk-rules")))
        .await;
    assert_eq!(status, 401);
    assert!(content_type.starts_with("application/problem+json"));
    let (status, _) = get(&stack, &analyst, "/v1/agent/risk-rules").await;
    assert_eq!(status, 403);

    // Two supervisors change the rules from version 1 at once: exactly one wins.
    let request = |token: &str, high: u32| {
        stack
            .http
            .post(format!("{gateway}/v1/agent/risk-rules"))
            .bearer_auth(token)
            .json(&json!({
                "based_on": 1,
                "thresholds": with(&["bulk_sms", "high"], json!(high)),
                "reason": "raise the SMS high threshold",
            }))
    };
    let (first, second) = tokio::join!(
        stack.call(request(&one, 600)),
        stack.call(request(&two, 700))
    );
    let mut statuses = [first.0, second.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409], "{first:?} {second:?}");
    let (winner, loser) = if first.0 == 201 {
        (first.1, second.1)
    } else {
        (second.1, first.1)
    };
    assert_eq!(winner["version"], 2);
    assert_eq!(loser["code"], "rules_changed", "{loser}");
    assert_eq!(changes().await, 2001);
    let (_, rules) = get(&stack, &one, "/v1/agent/risk-rules").await;
    assert_eq!(rules["current"]["version"], 2);
    assert_eq!(rules["current"]["thresholds"], winner["thresholds"]);
    let current: i64 =
        sqlx::query_scalar("SELECT count(*) FROM risk_rule_versions WHERE activated")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert_eq!(current, 1);
}

mod console {
    //! The supervisors' console page over HTTP: replay a proposal, adopt it.

    use reqwest::{StatusCode, header};
    use system_tests::{
        Stack,
        console::{client, hidden, login as console_login},
    };

    use super::with_signals;

    async fn page(stack: &Stack, cookie: &str) -> (StatusCode, String) {
        let r = client()
            .get(format!("{}/console/risk-rules", stack.url("gateway")))
            .header(header::COOKIE, cookie)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn submit(stack: &Stack, cookie: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
        let r = client()
            .post(format!("{}/console/risk-rules", stack.url("gateway")))
            .header(header::COOKIE, cookie)
            .form(form)
            .send()
            .await
            .unwrap();
        let location = r
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let status = r.status();
        let body = r.text().await.unwrap();
        (status, if location.is_empty() { body } else { location })
    }

    async fn current_version(stack: &Stack) -> i32 {
        sqlx::query_scalar("SELECT version FROM risk_rule_versions WHERE activated")
            .fetch_one(&stack.pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_supervisor_replays_and_adopts_a_proposal_in_the_console() {
        let stack = Stack::start().await;
        stack.create_agent("boss", &["supervisor"]);
        stack.create_agent("analyst.one", &["security"]);
        let boss = console_login(&stack, "boss").await;
        let analyst = console_login(&stack, "analyst.one").await;
        // One case flagged for its SMS bursts alone (150 an hour).
        stack
            .case_in_security_review(&with_signals(600, (0, 150, 0)))
            .await;

        let (status, html) = page(&stack, &boss).await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("id=\"current-version\">1<"), "{html}");
        assert!(html.contains("/console/risk-rules"), "nav link");
        let csrf = hidden(&html, "csrf");
        let form = |op: &'static str, sms_medium: &'static str, reason: &'static str| {
            vec![
                ("csrf", csrf.clone()),
                ("op", op.to_owned()),
                ("based_on", "1".to_owned()),
                ("fraud_linked_contacts_medium", "1".to_owned()),
                ("fraud_linked_contacts_high", "3".to_owned()),
                ("bulk_sms_medium", sms_medium.to_owned()),
                ("bulk_sms_high", "800".to_owned()),
                ("international_calls_medium", "10".to_owned()),
                ("international_calls_high", "50".to_owned()),
                ("highs_for_extreme", "3".to_owned()),
                ("days", "7".to_owned()),
                ("reason", reason.to_owned()),
            ]
        };
        let (stack, boss) = (&stack, boss.as_str());
        let send = |f: Vec<(&'static str, String)>| async move {
            let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            submit(stack, boss, &pairs).await
        };

        // Replay: the one case would pass; nothing changes.
        let (status, html) = send(form("replay", "400", "")).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        for (count, n) in [
            ("assessments", 1),
            ("flagged_recorded", 1),
            ("flagged_proposed", 0),
            ("cleared", 1),
        ] {
            assert!(
                html.contains(&format!("data-count=\"{count}\">{n}<")),
                "{count}: {html}"
            );
        }
        assert_eq!(current_version(stack).await, 1);

        // A threshold out of bounds is refused and changes nothing.
        let (status, _) = send(form("adopt", "0", "SMS bursts of shops")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let (status, _) = send(form("adopt", "x", "SMS bursts of shops")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(current_version(stack).await, 1);

        // Adopt.
        let (status, location) = send(form("adopt", "400", "SMS bursts of shops")).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
        assert_eq!(location, "/console/risk-rules?done=changed");
        assert_eq!(current_version(stack).await, 2);
        let (_, html) = page(stack, boss).await;
        assert!(html.contains("id=\"current-version\">2<"), "{html}");
        assert!(html.contains("SMS bursts of shops"));
        // The form was based on version 1: adopting it again is refused.
        let (status, _) = send(form("adopt", "300", "SMS bursts of shops")).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(current_version(stack).await, 2);

        // Not for analysts.
        let (status, _) = page(stack, &analyst).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
}
