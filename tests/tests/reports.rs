//! Supervisors' reports and exports (issue 15 item 4) over the real processes.
//!
//! 1. A handful of real cases go through the stack (two flagged cases decided by a
//!    security analyst, one approved after an expedite request, one rejected and
//!    complained about; a clean case that reactivates by itself; one left waiting),
//!    and each report's figures are checked against what was done by hand; CSV and
//!    JSON say the same; the case export has the cases with masked numbers only; bad
//!    input is problem+json and records nothing; other roles get 403; every read is
//!    audited.
//! 2. 100,000 finished cases (straight SQL) are exported over HTTP, read chunk by
//!    chunk, while the gateway's resident memory is sampled: the rows and the
//!    per-outcome totals match the `cases` report and the supervisor dashboard's
//!    cases table for the same range, and
//!    the gateway's memory stays flat. The export and report queries are checked with
//!    EXPLAIN to read the history through the time indexes.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use chrono::{Days, NaiveDate, Utc};
use serde_json::{Value, json};
use system_tests::{Stack, StackOptions, TestSubscriber};

const SETTLE: Duration = Duration::from_secs(30);
const REPORTS: [&str; 6] = [
    "cases",
    "stages",
    "agents",
    "complaints",
    "false-positive-reasons",
    "expedite-requests",
];

/// The per-outcome totals (and `all`) of the supervisor dashboard's cases table for
/// a range, read off the page as a supervisor logged in to the console sees it.
async fn dashboard_totals(
    stack: &Stack,
    username: &str,
    from: &str,
    to: &str,
) -> BTreeMap<String, i64> {
    let cookie = system_tests::console::login(stack, username).await;
    let page = system_tests::console::client()
        .get(format!("{}/console/dashboard", stack.url("gateway")))
        .query(&[("from", from), ("to", to)])
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let mut totals = BTreeMap::new();
    for cell in html.split("<td data-outcome=\"").skip(1) {
        let (outcome, rest) = cell.split_once('"').expect("outcome");
        let number: String = rest
            .split("<strong")
            .nth(1)
            .and_then(|s| s.split_once('>'))
            .map(|(_, s)| s.chars().take_while(char::is_ascii_digit).collect())
            .expect("a figure");
        totals.insert(outcome.to_owned(), number.parse().expect("a number"));
    }
    assert!(!totals.is_empty(), "no totals on the dashboard");
    totals
}

/// Today in China Standard Time (the reports' days).
fn today() -> NaiveDate {
    (Utc::now() + chrono::Duration::hours(8)).date_naive()
}

async fn get(stack: &Stack, token: &str, path: &str, query: &[(&str, &str)]) -> reqwest::Response {
    stack
        .http
        .get(format!("{}{path}", stack.url("gateway")))
        .query(query)
        .bearer_auth(token)
        .send()
        .await
        .expect("request sent")
}

async fn report_json(stack: &Stack, token: &str, name: &str, from: &str, to: &str) -> Value {
    let r = get(
        stack,
        token,
        &format!("/v1/agent/reports/{name}"),
        &[("from", from), ("to", to), ("format", "json")],
    )
    .await;
    assert_eq!(r.status(), 200, "{name}");
    r.json().await.expect("json")
}

/// A CSV document's lines split into cells (RFC 4180 quoting).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = vec![];
    let (mut row, mut cell, mut quoted, mut chars) =
        (vec![], String::new(), false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    rows
}

/// The CSV and the JSON of one report hold the same columns, rows and figures.
async fn csv_and_json_agree(stack: &Stack, token: &str, name: &str, from: &str, to: &str) -> Value {
    let doc = report_json(stack, token, name, from, to).await;
    // The format chosen by Accept alone.
    let r = stack
        .http
        .get(format!("{}/v1/agent/reports/{name}", stack.url("gateway")))
        .query(&[("from", from), ("to", to)])
        .header("accept", "text/csv")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"),
        "{name}"
    );
    let csv = parse_csv(&r.text().await.unwrap());
    let columns: Vec<String> = doc["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(csv[0], columns, "{name}");
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(csv.len() - 1, rows.len(), "{name}");
    for (line, row) in csv[1..].iter().zip(rows) {
        for (cell, column) in line.iter().zip(&columns) {
            let value = &row[column.as_str()];
            let same = match value {
                Value::Null => cell.is_empty(),
                Value::Number(n) => cell.parse::<f64>().ok() == n.as_f64(),
                Value::String(s) => cell == s,
                other => panic!("{name}: unexpected {other}"),
            };
            assert!(same, "{name}.{column}: CSV {cell:?} vs JSON {value}");
        }
    }
    doc
}

fn rows_where<'a>(doc: &'a Value, column: &str, value: &str) -> Vec<&'a Value> {
    doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r[column] == value)
        .collect()
}

async fn audit_count(stack: &Stack, action: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = $1")
        .bind(action)
        .fetch_one(&stack.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn reports_show_what_was_done_and_only_to_supervisors() {
    let stack = Stack::start().await;
    stack.create_agent("boss.rep", &["supervisor"]);
    stack.create_agent("analyst.rep", &["security"]);
    let boss = stack.login("boss.rep").await;
    let analyst = stack.login("analyst.rep").await;
    let analyst_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM agents WHERE username = 'analyst.rep'")
            .fetch_one(&stack.pool)
            .await
            .unwrap();

    // A: flagged, asks for expedited handling, approved.
    let a = TestSubscriber::flagged(730);
    let (case_a, token_a, review_a) = stack.case_in_security_review(&a).await;
    let (status, body) = stack
        .call(
            stack
                .http
                .post(format!(
                    "{}/v1/cases/{case_a}/expedite",
                    stack.url("gateway")
                ))
                .bearer_auth(&token_a)
                .json(&json!({"reason": "My bank sends codes to this number."})),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    let (status, body) = stack
        .act(
            &analyst,
            &case_a,
            "approve",
            review_a["version"].as_i64().unwrap(),
            json!({"reason": "explained"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    stack
        .wait_for_state(&case_a, &token_a, "reactivated", SETTLE)
        .await;
    // B: flagged, rejected, complains; the supervisor answers.
    let b = TestSubscriber::flagged(731);
    let (case_b, token_b, review_b) = stack.case_in_security_review(&b).await;
    let (status, body) = stack
        .act(
            &analyst,
            &case_b,
            "reject",
            review_b["version"].as_i64().unwrap(),
            json!({"reason_code": "fraud_confirmed"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, complaint) = stack
        .call(
            stack
                .http
                .post(format!(
                    "{}/v1/cases/{case_b}/complaints",
                    stack.url("gateway")
                ))
                .bearer_auth(&token_b)
                .json(&json!({"channel": "web", "text": "Why was I refused?"})),
        )
        .await;
    assert_eq!(status, 201, "{complaint}");
    let complaint_id = complaint["complaint_id"].as_str().unwrap();
    let (status, body) = stack
        .call(
            stack
                .http
                .post(format!(
                    "{}/v1/agent/complaints/{complaint_id}/answer",
                    stack.url("gateway")
                ))
                .bearer_auth(&boss)
                .json(&json!({"answer": "The refusal stands; you may appeal."})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // C: clean, reactivates by itself. D: opened, left waiting.
    let c = TestSubscriber::clean(732);
    stack.add_subscriber(&c).await;
    let (case_c, token_c) = stack.open_verified_case(&c).await;
    stack
        .wait_for_state(&case_c, &token_c, "reactivated", SETTLE)
        .await;
    let d = TestSubscriber::clean(733);
    stack.add_subscriber(&d).await;
    let (case_d, _) = stack.open_case(&d).await;

    let day = today().to_string();
    let (from, to) = (day.as_str(), day.as_str());

    // Cases per channel and outcome: all four through the app.
    let cases = csv_and_json_agree(&stack, &boss, "cases", from, to).await;
    let per_outcome: BTreeMap<String, i64> = cases["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["channel"], "app");
            (
                r["outcome"].as_str().unwrap().to_owned(),
                r["cases"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        per_outcome,
        BTreeMap::from([("open".into(), 2), ("reactivated".into(), 2)]),
        "{cases}"
    );
    assert_eq!(cases["from"], day);
    assert_eq!(cases["utc_offset"], "+08:00");

    // Stages: A and B left security review, each within its 24 h SLA; A, B and C
    // proved identity.
    let stages = csv_and_json_agree(&stack, &boss, "stages", from, to).await;
    let review = rows_where(&stages, "stage", "security_review");
    assert_eq!(review.len(), 1, "{stages}");
    assert_eq!(review[0]["exits"], 2);
    assert_eq!(review[0]["sla_met"], 2);
    assert_eq!(review[0]["sla_met_rate"], 1.0);
    assert!(
        review[0]["p90_seconds"].as_f64().unwrap() >= review[0]["p50_seconds"].as_f64().unwrap()
    );
    let waiting = rows_where(&stages, "stage", "awaiting_identity");
    assert_eq!(waiting[0]["exits"], 3, "{stages}");
    assert!(
        waiting[0]["sla_met"].is_null(),
        "no SLA while the subscriber acts"
    );

    // Teams and agents: the analyst decided A and B; the team total says the same.
    let agents = csv_and_json_agree(&stack, &boss, "agents", from, to).await;
    let security = rows_where(&agents, "team", "security");
    assert_eq!(security.len(), 2, "{agents}");
    assert!(security[0]["agent_id"].is_null(), "the team's total first");
    assert_eq!(security[1]["agent_id"], analyst_id.to_string());
    assert_eq!(security[1]["username"], "analyst.rep");
    for row in security {
        assert_eq!(row["cases"], 2);
        assert_eq!(row["decisions"], 2);
    }
    assert_eq!(agents["rows"].as_array().unwrap().len(), 2, "{agents}");

    // Complaints: one, by web, answered in time.
    let complaints = csv_and_json_agree(&stack, &boss, "complaints", from, to).await;
    for channel in ["web", "all"] {
        let row = rows_where(&complaints, "channel", channel);
        assert_eq!(row.len(), 1, "{complaints}");
        assert_eq!(row[0]["made"], 1);
        assert_eq!(row[0]["answered"], 1);
        assert_eq!(row[0]["answered_in_time"], 1);
        assert_eq!(row[0]["open"], 0);
        assert!(row[0]["answer_p50_seconds"].as_f64().unwrap() >= 0.0);
    }

    // False positives: both cases were flagged by the same codes, A was approved.
    let fp = csv_and_json_agree(&stack, &boss, "false-positive-reasons", from, to).await;
    let rows = fp["rows"].as_array().unwrap();
    assert!(!rows.is_empty(), "{fp}");
    for row in rows {
        assert_eq!(row["flagged"], 2, "{fp}");
        assert_eq!(row["approved"], 1, "{fp}");
        assert_eq!(row["false_positive_rate"], 0.5);
    }

    // Expedite requests: A's, asked in security review, now reactivated.
    let expedite = csv_and_json_agree(&stack, &boss, "expedite-requests", from, to).await;
    for state in ["security_review", "all"] {
        let row = rows_where(&expedite, "asked_in_state", state);
        assert_eq!(row.len(), 1, "{expedite}");
        assert_eq!(row[0]["requests"], 1);
        assert_eq!(row[0]["finished"], 1);
        assert_eq!(row[0]["reactivated"], 1);
    }

    // Another day has none of it.
    let yesterday = (today() - Days::new(1)).to_string();
    let empty = report_json(&stack, &boss, "cases", &yesterday, &yesterday).await;
    assert_eq!(empty["rows"], json!([]));

    // The export: four cases, masked numbers only, CSV and NDJSON alike.
    let r = get(
        &stack,
        &boss,
        "/v1/agent/exports/cases",
        &[("from", from), ("to", to), ("format", "csv")],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains(".csv")
    );
    let csv_text = r.text().await.unwrap();
    let csv = parse_csv(&csv_text);
    assert_eq!(
        csv[0],
        [
            "case_id",
            "channel",
            "created_at",
            "finished_at",
            "outcome",
            "state",
            "tier",
            "msisdn_masked"
        ]
    );
    assert_eq!(csv.len(), 5, "{csv_text}");
    let r = get(
        &stack,
        &boss,
        "/v1/agent/exports/cases",
        &[("from", from), ("to", to), ("format", "json")],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let ndjson = r.text().await.unwrap();
    let lines: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 4);
    for (line, cells) in lines.iter().zip(&csv[1..]) {
        assert_eq!(line["case_id"], cells[0].as_str());
        assert_eq!(line["outcome"], cells[4].as_str());
        // The CSV cell is defused ('+86…) since it starts with '+'.
        assert_eq!(
            format!("'{}", line["msisdn_masked"].as_str().unwrap()),
            cells[7]
        );
        assert!(line["msisdn_masked"].as_str().unwrap().contains("*******"));
    }
    let by_case: BTreeMap<&str, &Value> = lines
        .iter()
        .map(|l| (l["case_id"].as_str().unwrap(), l))
        .collect();
    assert_eq!(by_case[case_a.as_str()]["outcome"], "reactivated");
    assert_eq!(by_case[case_a.as_str()]["tier"], "medium");
    assert!(by_case[case_a.as_str()]["finished_at"].is_string());
    assert_eq!(by_case[case_b.as_str()]["outcome"], "open");
    assert_eq!(by_case[case_b.as_str()]["state"], "rejected");
    assert!(by_case[case_b.as_str()]["finished_at"].is_null());
    assert_eq!(by_case[case_d.as_str()]["state"], "awaiting_identity");
    for s in [&a, &b, &c, &d] {
        assert!(!csv_text.contains(&s.msisdn) && !ndjson.contains(&s.msisdn));
        assert!(!csv_text.contains(&s.full_name) && !ndjson.contains(&s.full_name));
        assert!(!csv_text.contains(&s.id_number) && !ndjson.contains(&s.id_number));
    }

    // Every read so far was audited, with the range.
    let reads = audit_count(&stack, "report.read").await;
    let exports = audit_count(&stack, "cases.export").await;
    assert_eq!(exports, 2);
    assert_eq!(reads, 2 * 6 + 1);
    let detail: Value = sqlx::query_scalar(
        "SELECT detail FROM audit_log WHERE action = 'cases.export' ORDER BY seq DESC LIMIT 1",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(detail, json!({"from": day, "to": day, "format": "json"}));

    // Bad input: problem+json, and nothing recorded.
    let long_ago = (today() - Days::new(366)).to_string();
    let bad: Vec<BadRequest> = vec![
        (
            "/v1/agent/reports/cases",
            vec![("from", to), ("to", &yesterday)],
            422,
        ),
        (
            "/v1/agent/reports/cases",
            vec![("from", &long_ago), ("to", to)],
            422,
        ),
        (
            "/v1/agent/reports/cases",
            vec![("from", "2026-02-30"), ("to", to)],
            422,
        ),
        ("/v1/agent/reports/cases", vec![("to", to)], 422),
        (
            "/v1/agent/reports/cases",
            vec![("from", from), ("to", to), ("format", "xml")],
            422,
        ),
        (
            "/v1/agent/reports/cases",
            vec![("from", from), ("to", to), ("x", "1")],
            422,
        ),
        (
            "/v1/agent/reports/nothing",
            vec![("from", from), ("to", to)],
            404,
        ),
        (
            "/v1/agent/exports/cases",
            vec![("from", to), ("to", &yesterday)],
            422,
        ),
        (
            "/v1/agent/exports/cases",
            vec![("from", "today"), ("to", to)],
            422,
        ),
    ];
    for (path, query, want) in bad {
        let r = get(&stack, &boss, path, &query).await;
        assert_eq!(r.status(), want, "{path} {query:?}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{path} {query:?}"
        );
        let problem: Value = r.json().await.unwrap();
        assert_eq!(problem["status"], want, "{problem}");
    }
    // Not a supervisor: 403 for every report, the export and the page.
    for path in REPORTS
        .iter()
        .map(|r| format!("/v1/agent/reports/{r}"))
        .chain(["/v1/agent/exports/cases".to_owned()])
    {
        let r = get(&stack, &analyst, &path, &[("from", from), ("to", to)]).await;
        assert_eq!(r.status(), 403, "{path}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    let cookie = |token: &str| format!("reactivation_session={token}");
    let page = |token: &str| {
        stack
            .http
            .get(format!("{}/console/reports", stack.url("gateway")))
            .query(&[("from", from), ("to", to), ("lang", "en")])
            .header("cookie", cookie(token))
            .send()
    };
    assert_eq!(page(&analyst).await.unwrap().status(), 403);
    assert_eq!(audit_count(&stack, "report.read").await, reads);
    assert_eq!(audit_count(&stack, "cases.export").await, exports);

    // The console page: the range's total, a link per report and format, the export.
    let r = page(&boss).await.unwrap();
    assert_eq!(r.status(), 200);
    // Attribute values as a browser reads them.
    let html = r
        .text()
        .await
        .unwrap()
        .replace("&#x2f;", "/")
        .replace("&#x3d;", "=")
        .replace("&#61;", "=")
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    assert!(
        html.contains("<strong id=\"cases-total\">4</strong>"),
        "{html}"
    );
    assert!(html.contains("href=\"/console/reports\" aria-current=\"page\""));
    for name in REPORTS {
        for format in ["csv", "json"] {
            let href = format!("/v1/agent/reports/{name}?from={day}&to={day}&format={format}");
            let at = html.find("reports/cases").unwrap_or(0);
            assert!(
                html.contains(&href),
                "{href} in {}",
                &html[at.saturating_sub(40)..(at + 200).min(html.len())]
            );
        }
    }
    assert!(html.contains(&format!(
        "/v1/agent/exports/cases?from={day}&to={day}&format=csv"
    )));
    assert!(!html.contains("<script>") && !html.contains("style=\""));
    let (ok, out) = stack.verify_audit();
    assert!(ok, "{out}");
}

/// A refused request: path, query, status.
type BadRequest<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16);

/// Finished cases seeded for the export.
const EXPORTED: i64 = 100_000;
/// Cases just outside the range on each side.
const OUTSIDE: i64 = 1_000;
/// The most the gateway's resident memory may grow during the export.
const RSS_GROWTH_LIMIT_KIB: u64 = 64 * 1024;

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("field in /proc/<pid>/status")
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The seeded cases: `g` in `1..=N + 2 * OUTSIDE`; the first and last `OUTSIDE` fall
/// just before and just after the range, the `N` between are spread evenly over it.
/// Parameters: $1 the range's start, $2 N, $3 OUTSIDE, $4 seconds between two cases.
const SEED_CASES: &str = r"
INSERT INTO reactivation_cases (id, msisdn, state, version, channel, locale, token_hash,
        created_at, updated_at, state_entered_at)
SELECT md5('export' || g)::uuid,
       '+8613' || lpad(g::text, 9, '0'),
       (ARRAY['reactivated', 'reactivated', 'reactivated', 'reactivated', 'reactivated',
              'reactivated', 'reactivated', 'cancelled', 'expired', 'closed'])[1 + g % 10]::case_state,
       2, (ARRAY['web', 'app', 'hotline', 'store'])[1 + g % 4], 'zh-CN',
       sha256(('export-token' || g)::bytea), t, t + interval '10 minutes', t + interval '10 minutes'
FROM generate_series(1, $2::int + 2 * $3::int) g,
     LATERAL (SELECT $1::timestamptz + (g - $3::int - 1) * ($4::float8 * interval '1 second') AS t) x";

/// Each case's opening and ending events, and a risk grading.
const SEED_HISTORY: [&str; 2] = [
    r"INSERT INTO case_events (id, case_id, version, from_state, to_state, event, actor_role, actor_id, at)
SELECT md5('export-event' || c.id || v)::uuid, c.id, v,
       CASE WHEN v = 2 THEN 'awaiting_identity'::case_state END,
       CASE WHEN v = 1 THEN 'awaiting_identity'::case_state ELSE c.state END,
       CASE WHEN v = 1 THEN 'opened'::case_event
            WHEN c.state = 'reactivated' THEN 'resolved_manually'::case_event
            WHEN c.state = 'cancelled' THEN 'cancelled'::case_event
            WHEN c.state = 'expired' THEN 'expired'::case_event ELSE 'closed'::case_event END,
       CASE WHEN v = 1 THEN 'customer'::actor_role ELSE 'system'::actor_role END,
       'seed', c.created_at + (v - 1) * interval '10 minutes'
FROM reactivation_cases c, generate_series(1, 2) v",
    r"INSERT INTO risk_assessments (id, case_id, tier, reason_codes, needs, signals, assessed_at)
SELECT md5('export-risk' || c.id)::uuid, c.id, 'low', '{}', '{}', '{}', c.created_at + interval '1 minute'
FROM reactivation_cases c",
];

/// What one streamed export delivered.
struct Streamed {
    rows: i64,
    totals: BTreeMap<String, i64>,
    bytes: usize,
    chunks: u64,
    seconds: f64,
    /// The gateway's highest `VmRSS` sampled while the body came in (KiB).
    rss_peak: u64,
}

/// Reads the export body chunk by chunk (never whole), counting rows and outcomes,
/// and samples the gateway's resident memory every few chunks.
async fn stream_export(
    stack: &Stack,
    token: &str,
    from: &str,
    to: &str,
    format: &str,
    pid: u32,
) -> Streamed {
    // A client of its own: the stack's has a 30 s timeout for the whole request.
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut response = client
        .get(format!("{}/v1/agent/exports/cases", stack.url("gateway")))
        .query(&[("from", from), ("to", to), ("format", format)])
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.content_length().is_none(),
        "streamed: no length known up front"
    );
    let mut out = Streamed {
        rows: 0,
        totals: BTreeMap::new(),
        bytes: 0,
        chunks: 0,
        seconds: 0.0,
        rss_peak: memory_kib(pid).0,
    };
    let mut carry = String::new();
    let mut header = format != "csv";
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        out.bytes += chunk.len();
        out.chunks += 1;
        carry.push_str(std::str::from_utf8(&chunk).expect("chunks end on line ends"));
        let complete = carry.rfind('\n').map_or(0, |i| i + 1);
        for line in carry[..complete].lines() {
            if !header {
                assert_eq!(
                    line,
                    "case_id,channel,created_at,finished_at,outcome,state,tier,msisdn_masked"
                );
                header = true;
                continue;
            }
            out.rows += 1;
            let outcome = if format == "csv" {
                line.split(',').nth(4).expect("outcome column").to_owned()
            } else {
                let row: Value = serde_json::from_str(line).expect("one object per line");
                row["outcome"].as_str().expect("outcome").to_owned()
            };
            *out.totals.entry(outcome).or_default() += 1;
        }
        carry.drain(..complete);
        if out.chunks.is_multiple_of(8) {
            out.rss_peak = out.rss_peak.max(memory_kib(pid).0);
        }
    }
    assert!(carry.is_empty(), "the last line is complete");
    out.seconds = started.elapsed().as_secs_f64();
    out
}

#[tokio::test]
async fn an_export_of_100000_cases_streams_with_flat_memory_and_matches_the_report() {
    let stack = Stack::start_with(StackOptions {
        services: vec!["gateway"],
        ..StackOptions::default()
    })
    .await;
    stack.create_agent("boss.export", &["supervisor"]);
    let boss = stack.login("boss.export").await;
    // A 30-day range ending 11 days ago (China Standard Time), seeded evenly.
    let last = today() - Days::new(11);
    let first = last - Days::new(29);
    let start = first.and_hms_opt(0, 0, 0).unwrap().and_utc() - chrono::Duration::hours(8);
    let spacing = (30.0 * 86_400.0) / EXPORTED as f64;
    let seeding = Instant::now();
    let mut tx = stack.pool.begin().await.unwrap();
    // The monthly partitions of the range, as the timers service creates them ahead.
    sqlx::query(
        "SELECT history_ensure_partitions(($1::timestamptz - interval '10 days')::date, 3)",
    )
    .bind(start)
    .execute(&mut *tx)
    .await
    .expect("partitions");
    sqlx::query(SEED_CASES)
        .bind(start)
        .bind(EXPORTED as i32)
        .bind(OUTSIDE as i32)
        .bind(spacing)
        .execute(&mut *tx)
        .await
        .expect("seed the cases");
    for statement in SEED_HISTORY {
        sqlx::query(statement)
            .execute(&mut *tx)
            .await
            .expect("seed the history");
    }
    tx.commit().await.unwrap();
    for table in ["reactivation_cases", "case_events", "risk_assessments"] {
        sqlx::query(&format!("VACUUM (ANALYZE) {table}"))
            .execute(&stack.pool)
            .await
            .unwrap();
    }
    println!(
        "seeded {} cases ({EXPORTED} in the range) in {:.1} s",
        EXPORTED + 2 * OUTSIDE,
        seeding.elapsed().as_secs_f64()
    );
    let (from, to) = (first.to_string(), last.to_string());

    // The report and export queries read the range through the time indexes.
    let end = start + chrono::Duration::days(30);
    for (what, sql) in [
        (
            "export",
            "SELECT c.id, (SELECT r.tier::text FROM risk_assessments r WHERE r.case_id = c.id \
             ORDER BY r.assessed_at DESC, r.id DESC LIMIT 1) FROM reactivation_cases c \
             WHERE c.created_at >= $1 AND c.created_at < $2 ORDER BY c.created_at, c.id",
        ),
        (
            "cases report",
            "SELECT channel, state, count(*) FROM reactivation_cases \
             WHERE created_at >= $1 AND created_at < $2 GROUP BY 1, 2",
        ),
        (
            "stages report",
            "SELECT e.from_state, count(*) FROM case_events e CROSS JOIN LATERAL \
             (SELECT p.at FROM case_events p WHERE p.case_id = e.case_id \
              AND p.version = e.version - 1 AND p.at <= e.at LIMIT 1) p \
             WHERE e.at >= $1 AND e.at < $2 AND e.from_state IS NOT NULL GROUP BY 1",
        ),
    ] {
        // A narrow window, as a day's report is: the plan must not read the history.
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {sql}"))
            .bind(start + chrono::Duration::days(3))
            .bind(end - chrono::Duration::days(26))
            .fetch_all(&stack.pool)
            .await
            .unwrap();
        let plan = plan.join("\n");
        println!("EXPLAIN {what}:\n{plan}");
        // Only the empty partitions of months ahead may be "scanned" (cost 0).
        let full_scans: Vec<&str> = plan
            .lines()
            .filter(|l| l.contains("Seq Scan") && !l.contains("cost=0.00..0.00"))
            .collect();
        assert!(full_scans.is_empty(), "{what} reads the history:\n{plan}");
    }

    let report = report_json(&stack, &boss, "cases", &from, &to).await;
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for row in report["rows"].as_array().unwrap() {
        *expected
            .entry(row["outcome"].as_str().unwrap().to_owned())
            .or_default() += row["cases"].as_i64().unwrap();
    }
    assert_eq!(expected.values().sum::<i64>(), EXPORTED, "{report}");
    // The supervisor dashboard, for the same range, shows the same totals.
    let dashboard = dashboard_totals(&stack, "boss.export", &from, &to).await;
    let mut shown = expected.clone();
    shown.insert("all".into(), EXPORTED);
    for outcome in ["reactivated", "cancelled", "expired", "closed", "open"] {
        shown.entry(outcome.into()).or_default();
    }
    assert_eq!(dashboard, shown, "the dashboard's totals are the report's");
    let stages = report_json(&stack, &boss, "stages", &from, &to).await;
    assert_eq!(
        rows_where(&stages, "stage", "awaiting_identity")[0]["exits"],
        EXPORTED
    );

    let pid = stack.pids("gateway")[0];
    for format in ["csv", "json"] {
        let (rss_before, hwm_before) = memory_kib(pid);
        let export = stream_export(&stack, &boss, &from, &to, format, pid).await;
        let (rss_after, hwm_after) = memory_kib(pid);
        let rss_peak = export.rss_peak.max(rss_after);
        println!(
            "exported ({format}) {} rows, {} bytes in {} chunks, {:.2} s; gateway RSS before \
             {rss_before} KiB, peak sampled {rss_peak} KiB (+{} KiB), after {rss_after} KiB; \
             VmHWM before {hwm_before} KiB, after {hwm_after} KiB",
            export.rows,
            export.bytes,
            export.chunks,
            export.seconds,
            rss_peak.saturating_sub(rss_before)
        );
        assert_eq!(export.rows, EXPORTED, "{format}");
        assert_eq!(
            export.totals, expected,
            "{format}: the export's totals are the report's"
        );
        assert!(
            rss_peak.saturating_sub(rss_before) < RSS_GROWTH_LIMIT_KIB,
            "{format}: the gateway grew by {} KiB during the export",
            rss_peak - rss_before
        );
        assert!(
            hwm_after.saturating_sub(hwm_before) < RSS_GROWTH_LIMIT_KIB,
            "{format}: the gateway's high-water mark grew by {} KiB",
            hwm_after - hwm_before
        );
    }
    // At most two exports at once per gateway (each holds a database connection): a
    // third is turned away with 503 and Retry-After, and not audited. Unread, the first
    // two (23 MB of NDJSON each, more than the sockets buffer) keep their slots.
    let audited = audit_count(&stack, "cases.export").await;
    let client = reqwest::Client::new();
    let open = || {
        client
            .get(format!("{}/v1/agent/exports/cases", stack.url("gateway")))
            .query(&[
                ("from", from.as_str()),
                ("to", to.as_str()),
                ("format", "json"),
            ])
            .bearer_auth(&boss)
            .send()
    };
    let first = open().await.unwrap();
    let second = open().await.unwrap();
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = open().await.unwrap();
    assert_eq!(third.status(), 503);
    assert!(third.headers().contains_key("retry-after"));
    let problem: Value = third.json().await.unwrap();
    assert_eq!(
        problem["type"]
            .as_str()
            .map(|t| t.ends_with("exports-busy")),
        Some(true),
        "{problem}"
    );
    assert_eq!(audit_count(&stack, "cases.export").await, audited + 2);
    // A client that leaves frees its slot: the query ends with the transfer.
    drop((first, second));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let again = open().await.unwrap();
        if again.status() == 200 {
            break;
        }
        assert_eq!(again.status(), 503);
        assert!(
            Instant::now() < deadline,
            "abandoned exports kept their slots"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let page = stack
        .http
        .get(format!("{}/console/reports", stack.url("gateway")))
        .query(&[("from", from.as_str()), ("to", to.as_str())])
        .header("cookie", format!("reactivation_session={boss}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("<strong id=\"cases-total\">{EXPORTED}</strong>")),
        "the Reports page shows the same total"
    );
}
