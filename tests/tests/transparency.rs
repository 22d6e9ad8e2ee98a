//! Transparency and channels over real HTTP: complaints with their 15-day clock and
//! their place in the queues, the regulator dossier (every transition, nothing
//! unmasked, nothing injectable), and live status streams (Server-Sent Events).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use system_tests::{Stack, TestSubscriber};

const SETTLE: Duration = Duration::from_secs(30);

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("not a time: {v}"))
}

async fn complain(stack: &Stack, case: &str, token: &str, body: &Value) -> (u16, Value) {
    stack
        .call(
            stack
                .http
                .post(format!(
                    "{}/v1/cases/{case}/complaints",
                    stack.url("gateway")
                ))
                .bearer_auth(token)
                .json(body),
        )
        .await
}

async fn open_complaints(stack: &Stack, agent: &str) -> (u16, Value) {
    stack
        .call(
            stack
                .http
                .get(format!("{}/v1/agent/complaints", stack.url("gateway")))
                .query(&[("status", "open")])
                .bearer_auth(agent),
        )
        .await
}

async fn security_queue(stack: &Stack, agent: &str) -> Vec<Value> {
    let (status, body) = stack
        .call(
            stack
                .http
                .get(format!("{}/v1/agent/queue", stack.url("gateway")))
                .query(&[("department", "security")])
                .bearer_auth(agent),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["cases"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_complaint_runs_a_fifteen_day_clock_leads_the_queue_and_is_closed_by_an_answer() {
    let stack = Stack::start().await;
    stack.create_agent("cs.one", &["cs"]);
    stack.create_agent("analyst.one", &["security"]);
    stack.create_agent("boss", &["supervisor"]);
    let (calm, upset) = (TestSubscriber::flagged(700), TestSubscriber::flagged(701));
    stack.add_subscriber(&calm).await;
    stack.add_subscriber(&upset).await;
    let (calm_case, calm_token) = stack.open_verified_case(&calm).await;
    stack
        .wait_for_state(&calm_case, &calm_token, "security_review", SETTLE)
        .await;
    let (case, token) = stack.open_verified_case(&upset).await;
    stack
        .wait_for_state(&case, &token, "security_review", SETTLE)
        .await;
    let analyst = stack.login("analyst.one").await;
    let boss = stack.login("boss").await;
    let cs = stack.login("cs.one").await;

    // Before any complaint: oldest first.
    let queue = security_queue(&stack, &analyst).await;
    let order: Vec<&str> = queue
        .iter()
        .map(|c| c["case_id"].as_str().unwrap())
        .collect();
    assert_eq!(order, [calm_case.as_str(), case.as_str()]);
    assert!(
        queue
            .iter()
            .all(|c| c["complaint"] == false && c["priority"] == "normal")
    );

    // Bad complaints change nothing.
    for (bad, want) in [
        (json!({"channel": "fax", "text": "x"}), 422),
        (json!({"channel": "app", "text": "   "}), 422),
        (json!({"channel": "app", "text": "x".repeat(2001)}), 422),
        (json!({"channel": "app", "text": "x", "extra": 1}), 422),
        (json!({"channel": "app"}), 422),
    ] {
        let (status, body) = complain(&stack, &case, &token, &bad).await;
        assert_eq!(status, want, "{bad}: {body}");
        assert_eq!(
            body["status"].as_u64(),
            Some(u64::from(want)),
            "problem+json: {body}"
        );
    }
    let (status, _) = complain(
        &stack,
        &case,
        "wrong-token",
        &json!({"channel": "app", "text": "x"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = open_complaints(&stack, &boss).await;
    assert_eq!(
        (status, body["complaints"].as_array().map(Vec::len)),
        (200, Some(0))
    );

    // The complaint: due in exactly 15 days.
    let (status, made) = complain(
        &stack,
        &case,
        &token,
        &json!({"channel": "app", "text": "Three days and still no service."}),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let complaint_id = made["complaint_id"].as_str().unwrap().to_owned();
    assert_eq!(made["status"], "open");
    assert_eq!(made["case_id"], case.as_str());
    assert_eq!(
        time(&made["due_at"]) - time(&made["created_at"]),
        chrono::Duration::days(15)
    );
    assert!(made.get("answered_by").is_none());
    // A second, later complaint on the other case.
    let (status, later) = complain(
        &stack,
        &calm_case,
        &calm_token,
        &json!({"channel": "regulator", "text": "Forwarded by 12300."}),
    )
    .await;
    assert_eq!(status, 201, "{later}");

    // Supervisors see open complaints by due date; others may not list them.
    let (status, list) = open_complaints(&stack, &boss).await;
    assert_eq!(status, 200, "{list}");
    let listed: Vec<&str> = list["complaints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["complaint_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        [
            complaint_id.as_str(),
            later["complaint_id"].as_str().unwrap()
        ]
    );
    assert_eq!(list["complaints"][0]["msisdn"], "+86*******0701");
    assert_eq!(list["complaints"][0]["case_state"], "security_review");
    assert_eq!(open_complaints(&stack, &cs).await.0, 403);
    assert_eq!(open_complaints(&stack, &analyst).await.0, 403);

    // The complaint raises its case: both have one now, so the order is by SLA again;
    // answer the older case's complaint and the complaining case leads.
    let queue = security_queue(&stack, &analyst).await;
    assert!(
        queue
            .iter()
            .all(|c| c["complaint"] == true && c["priority"] == "complaint")
    );
    let answer_url = |case: &str, id: &str| {
        format!(
            "{}/v1/agent/cases/{case}/complaints/{id}/answer",
            stack.url("gateway")
        )
    };
    let (status, closed) = stack
        .call(
            stack
                .http
                .post(answer_url(
                    &calm_case,
                    later["complaint_id"].as_str().unwrap(),
                ))
                .bearer_auth(&boss)
                .json(&json!({"answer": "Forwarded to the security team."})),
        )
        .await;
    assert_eq!(status, 200, "{closed}");
    let queue = security_queue(&stack, &analyst).await;
    let order: Vec<(&str, bool)> = queue
        .iter()
        .map(|c| {
            (
                c["case_id"].as_str().unwrap(),
                c["complaint"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(order, [(case.as_str(), true), (calm_case.as_str(), false)]);

    // The agent case view lists the complaint.
    let view = stack.agent_case(&analyst, &case).await;
    assert_eq!(view["complaints"][0]["complaint_id"], complaint_id.as_str());
    assert_eq!(view["complaints"][0]["status"], "open");

    // Answering: bad bodies and wrong ids first, then the answer, then a second answer.
    let url = answer_url(&case, &complaint_id);
    for bad in [
        json!({}),
        json!({"answer": ""}),
        json!({"answer": "ok", "x": 1}),
    ] {
        let (status, body) = stack
            .call(stack.http.post(&url).bearer_auth(&cs).json(&bad))
            .await;
        assert_eq!(status, 422, "{bad}: {body}");
    }
    let (status, _) = stack
        .call(
            stack
                .http
                .post(answer_url(&calm_case, &complaint_id))
                .bearer_auth(&cs)
                .json(&json!({"answer": "wrong case"})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = stack
        .call(stack.http.post(&url).json(&json!({"answer": "no session"})))
        .await;
    assert_eq!(status, 401);
    let (status, answered) =
        stack
            .call(
                stack.http.post(&url).bearer_auth(&cs).json(
                    &json!({"answer": "Your case is with security; expect a decision today."}),
                ),
            )
            .await;
    assert_eq!(status, 200, "{answered}");
    assert_eq!(answered["status"], "answered");
    assert_eq!(answered["answered_by"], "cs.one");
    assert_eq!(answered["regulator_eligible"], true);
    let (status, again) = stack
        .call(
            stack
                .http
                .post(&url)
                .bearer_auth(&cs)
                .json(&json!({"answer": "again"})),
        )
        .await;
    assert_eq!(
        (status, again["code"].as_str()),
        (409, Some("complaint_already_answered"))
    );

    // Closed: gone from the open list and from the head of the queue; the subscriber reads the answer.
    let (_, list) = open_complaints(&stack, &boss).await;
    assert_eq!(
        list["complaints"].as_array().map(Vec::len),
        Some(0),
        "{list}"
    );
    let queue = security_queue(&stack, &analyst).await;
    assert!(queue.iter().all(|c| c["complaint"] == false));
    let (status, mine) = stack
        .call(
            stack
                .http
                .get(format!(
                    "{}/v1/cases/{case}/complaints",
                    stack.url("gateway")
                ))
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(
        mine["complaints"][0]["answer"],
        "Your case is with security; expect a decision today."
    );
    assert!(mine["complaints"][0].get("answered_by").is_none(), "{mine}");

    // Each answer is in the audit chain, which still verifies.
    let answers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'complaint.answer'")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert_eq!(answers, 2);
    let (ok, report) = stack.verify_audit();
    assert!(ok, "{report}");
}

#[tokio::test]
async fn the_dossier_of_a_finished_case_has_every_transition_and_no_unmasked_id() {
    let stack = Stack::start().await;
    stack.create_agent("boss", &["supervisor"]);
    stack.create_agent("tech.one", &["technical"]);
    let mut s = TestSubscriber::clean(720);
    s.locale = "zh-CN";
    stack.add_subscriber(&s).await;
    let (case, token) = stack.open_verified_case(&s).await;
    stack
        .wait_for_state(&case, &token, "reactivated", SETTLE)
        .await;
    let evil = "<script>alert('pwned')</script><img src=x onerror=alert(1)>";
    let (status, body) = complain(
        &stack,
        &case,
        &token,
        &json!({"channel": "web", "text": evil}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let boss = stack.login("boss").await;
    let url = format!("{}/v1/agent/cases/{case}/dossier", stack.url("gateway"));

    let (status, ct, json_text) = stack
        .call_raw(stack.http.get(&url).bearer_auth(&boss))
        .await;
    assert_eq!(status, 200, "{json_text}");
    assert!(ct.starts_with("application/json"), "{ct}");
    let dossier: Value = serde_json::from_str(&json_text).unwrap();
    let rows: Vec<(i32, String)> = sqlx::query_as(
        "SELECT version, to_state::text FROM case_events WHERE case_id = $1::uuid ORDER BY version",
    )
    .bind(&case)
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    let timeline = dossier["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), rows.len(), "every transition: {dossier}");
    for (entry, (version, to)) in timeline.iter().zip(&rows) {
        assert_eq!(entry["version"].as_i64(), Some(i64::from(*version)));
        assert_eq!(entry["to"].as_str(), Some(to.as_str()));
        assert!(entry["actor_role"].is_string() && entry["actor_id"].is_string());
    }
    assert_eq!(dossier["facts"]["state"], "reactivated");
    assert_eq!(dossier["language"], "zh-CN");
    assert_eq!(dossier["parties"]["subscriber"]["msisdn"], "+86*******0720");
    assert_eq!(
        dossier["parties"]["subscriber"]["id_number"].as_str(),
        Some(format!("**************{}", &s.id_number[14..]).as_str())
    );
    assert_eq!(dossier["complaints"][0]["text"], evil);
    assert_eq!(dossier["request"]["channel"], "app");
    assert!(!dossier["facts"]["orders"].as_array().unwrap().is_empty());
    assert!(!json_text.contains(&s.id_number), "full ID in the JSON");
    assert!(
        !json_text.contains(&s.id_number[..14]),
        "ID prefix in the JSON"
    );
    assert!(
        !json_text.contains(&s.msisdn[3..]),
        "full number in the JSON"
    );

    for request in [
        stack.http.get(&url).bearer_auth(&boss).header(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        stack
            .http
            .get(&url)
            .query(&[("format", "html")])
            .bearer_auth(&boss),
    ] {
        let (status, ct, html) = stack.call_raw(request).await;
        assert_eq!(status, 200, "{html}");
        assert!(ct.starts_with("text/html"), "{ct}");
        assert!(html.contains("<html lang=\"zh-CN\">"));
        assert!(html.contains("@media print"));
        assert!(!html.contains(&s.id_number), "full ID in the HTML");
        assert!(!html.contains(&s.id_number[..14]), "ID prefix in the HTML");
        assert!(!html.contains("<script"), "markup from the complaint");
        assert!(!html.contains("<img"), "markup from the complaint");
        assert!(html.contains("&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;"));
        for (version, _) in &rows {
            assert!(
                html.contains(&format!("<tr><td>{version}</td>")),
                "row {version}"
            );
        }
    }

    // Who may export, and bad requests.
    let tech = stack.login("tech.one").await;
    assert_eq!(
        stack.call(stack.http.get(&url).bearer_auth(&tech)).await.0,
        403
    );
    assert_eq!(stack.call(stack.http.get(&url)).await.0, 401);
    assert_eq!(
        stack
            .call(
                stack
                    .http
                    .get(&url)
                    .query(&[("format", "pdf")])
                    .bearer_auth(&boss)
            )
            .await
            .0,
        422
    );
    let missing = format!(
        "{}/v1/agent/cases/{}/dossier",
        stack.url("gateway"),
        uuid::Uuid::now_v7()
    );
    assert_eq!(
        stack
            .call(stack.http.get(&missing).bearer_auth(&boss))
            .await
            .0,
        404
    );

    // Each export is audited.
    let exports: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'case.dossier' AND case_id = $1::uuid",
    )
    .bind(&case)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(exports, 3);
}

/// A minimal Server-Sent Events reader over a streaming response.
struct SseReader {
    response: reqwest::Response,
    buffer: String,
    comments: usize,
}

impl SseReader {
    async fn open(request: reqwest::RequestBuilder) -> (u16, String, Self) {
        let response = request.send().await.expect("stream opened");
        let status = response.status().as_u16();
        let ct = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (
            status,
            ct,
            Self {
                response,
                buffer: String::new(),
                comments: 0,
            },
        )
    }

    /// The next event (name, id, data), or a panic after `timeout`.
    async fn next(&mut self, timeout: Duration) -> (String, String, Value) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut name, mut id, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                    } else if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return (name, id, serde_json::from_str(&data).expect("JSON data"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no event within {timeout:?}; have {:?}",
                self.buffer
            );
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("no event within {timeout:?}"))
                .expect("stream readable")
                .expect("stream still open");
            self.buffer
                .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
        }
    }
}

#[tokio::test]
async fn live_streams_send_the_current_status_then_every_change_in_order() {
    let stack = Stack::start().await;
    stack.create_agent("cs.one", &["cs"]);
    stack.create_agent("admin.one", &["admin"]);
    let s = TestSubscriber::clean(740);
    stack.add_subscriber(&s).await;
    let (case, token) = stack.open_case(&s).await;
    // Streams outlive the harness client's 30 s limit: use a client without one.
    let streaming = reqwest::Client::new();
    let gateway = stack.url("gateway").to_owned();

    // A wrong token is a missing case; so is no token.
    for request in [
        streaming
            .get(format!("{gateway}/v1/cases/{case}/events"))
            .bearer_auth("wrong"),
        streaming.get(format!("{gateway}/v1/cases/{case}/events")),
        streaming
            .get(format!("{gateway}/v1/cases/{case}/events"))
            .query(&[("token", "wrong")]),
    ] {
        let (status, body) = stack.call(request).await;
        assert_eq!(status, 404, "{body}");
    }

    // The customer stream (token in the query, as EventSource clients send it) and an agent's.
    let (status, ct, mut customer) = SseReader::open(
        streaming
            .get(format!("{gateway}/v1/cases/{case}/events"))
            .query(&[("token", token.as_str())]),
    )
    .await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let cs = stack.login("cs.one").await;
    let (status, _, mut agent) = SseReader::open(
        streaming
            .get(format!("{gateway}/v1/agent/cases/{case}/events"))
            .bearer_auth(&cs),
    )
    .await;
    assert_eq!(status, 200);
    let admin = stack.login("admin.one").await;
    let (status, body) = stack
        .call(
            stack
                .http
                .get(format!("{gateway}/v1/agent/cases/{case}/events"))
                .bearer_auth(&admin),
        )
        .await;
    assert_eq!(status, 403, "{body}");

    // First: where the case stands now.
    for stream in [&mut customer, &mut agent] {
        let (name, id, data) = stream.next(Duration::from_secs(10)).await;
        assert_eq!((name.as_str(), id.as_str()), ("status", "1"));
        assert_eq!(data["case_id"], case.as_str());
        assert_eq!(
            (data["state"].as_str(), data["version"].as_i64()),
            (Some("awaiting_identity"), Some(1))
        );
        assert!(data["at"].is_string());
    }

    // Then drive the case: proof → risk → provisioning → reactivated, one event per change, in order.
    let (status, answer) = stack
        .verify(
            &case,
            &token,
            &json!({"method": "service_password", "password": s.password}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let want = ["risk_assessment", "provisioning", "reactivated"];
    for stream in [&mut customer, &mut agent] {
        let mut seen = Vec::new();
        for (i, state) in want.iter().enumerate() {
            let (name, id, data) = stream.next(SETTLE).await;
            let version = i64::try_from(i).unwrap() + 2;
            assert_eq!(name, "status");
            assert_eq!(id, version.to_string());
            assert_eq!(data["version"].as_i64(), Some(version), "{data}");
            seen.push(data["state"].as_str().unwrap().to_owned());
            assert_eq!(data["state"].as_str(), Some(*state), "{seen:?}");
        }
    }
    let status = stack.status(&case, &token).await.1;
    assert_eq!(status["version"].as_i64(), Some(4));

    // A stream opened on a finished case starts at its last state.
    let (_, _, mut late) = SseReader::open(
        streaming
            .get(format!("{gateway}/v1/cases/{case}/events"))
            .bearer_auth(&token),
    )
    .await;
    let (_, id, data) = late.next(Duration::from_secs(10)).await;
    assert_eq!(
        (id.as_str(), data["state"].as_str()),
        ("4", Some("reactivated"))
    );
}

#[tokio::test]
async fn a_stream_misses_nothing_when_the_gateway_loses_its_listen_connection() {
    let stack = Stack::start().await;
    let s = TestSubscriber::clean(760);
    stack.add_subscriber(&s).await;
    let (case, token) = stack.open_case(&s).await;
    let streaming = reqwest::Client::new();
    let (status, _, mut stream) = SseReader::open(
        streaming
            .get(format!("{}/v1/cases/{case}/events", stack.url("gateway")))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 200);
    let (_, id, _) = stream.next(Duration::from_secs(10)).await;
    assert_eq!(id, "1");

    // Cut the gateway's one LISTEN connection, as a network fault or a restarted
    // PostgreSQL would, and move the case at once (while nobody listens).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let cut: Vec<bool> = sqlx::query_scalar(
            r#"SELECT pg_terminate_backend(pid) FROM pg_stat_activity
               WHERE datname = current_database() AND query = 'LISTEN "case_changed"'"#,
        )
        .fetch_all(&stack.pool)
        .await
        .unwrap();
        if cut.iter().any(|ok| *ok) {
            break;
        }
        assert!(Instant::now() < deadline, "the gateway never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, answer) = stack
        .verify(
            &case,
            &token,
            &json!({"method": "service_password", "password": s.password}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");

    // The listener reconnects and the stream catches up from the event log, in order.
    let mut seen = Vec::new();
    for version in 2..=4 {
        let (_, id, data) = stream.next(SETTLE).await;
        assert_eq!(id, version.to_string(), "{seen:?}");
        seen.push(data["state"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["risk_assessment", "provisioning", "reactivated"]);
}
