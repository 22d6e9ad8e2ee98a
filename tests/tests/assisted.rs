//! Agent-assisted channels over the HTTP API (issue 14 item 1): a hotline agent
//! looks a number up and opens a case for a caller; the case token goes by SMS to
//! the contact on file (never to the agent); the caller proves with a code and the
//! case is reactivated. And what is refused: other roles, bad input, a spent lookup
//! budget, each changing nothing; every lookup audited and masked.

use std::time::Duration;

use serde_json::{Value, json};
use system_tests::{Stack, TestSubscriber};

const SETTLE: Duration = Duration::from_secs(30);

/// `POST /v1/agent/numbers/lookup`.
async fn lookup(stack: &Stack, token: &str, msisdn: &str) -> (u16, Value) {
    stack
        .call(
            stack
                .http
                .post(format!("{}/v1/agent/numbers/lookup", stack.url("gateway")))
                .bearer_auth(token)
                .json(&json!({"msisdn": msisdn})),
        )
        .await
}

/// `POST /v1/agent/cases`.
async fn open_for(stack: &Stack, token: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
    let mut request = stack
        .http
        .post(format!("{}/v1/agent/cases", stack.url("gateway")))
        .bearer_auth(token)
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    stack.call(request).await
}

fn hotline_body(s: &TestSubscriber) -> Value {
    json!({
        "msisdn": s.msisdn,
        "full_name": s.full_name,
        "id_number": s.id_number,
        "channel": "hotline",
        "identity_check": "hotline_call",
        "locale": s.locale,
    })
}

/// The case token in the token SMS sent to `to` (waits for the timers service to deliver it).
async fn token_from_sms(stack: &Stack, to: &str) -> String {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let messages = stack.sim_outbox(to).await;
        if let Some(token) = messages
            .iter()
            .filter_map(|m| m["body"].as_str())
            .find_map(|b| b.split("Case token: ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
        {
            return token.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no token SMS to the contact on file: {messages:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn count(stack: &Stack, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&stack.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn a_hotline_agent_opens_a_case_the_caller_proves_with_a_code_and_it_is_reactivated() {
    let stack = Stack::start().await;
    let caller = TestSubscriber::clean(1401);
    stack.add_subscriber(&caller).await;
    stack.create_agent("hotline.agent", &["cs"]);
    let agent = stack.login("hotline.agent").await;

    // The agent looks the number up first: nothing yet, and the number is masked.
    let (status, found) = lookup(&stack, &agent, &caller.msisdn).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["cases"], json!([]));
    let masked = found["msisdn"].as_str().unwrap();
    assert!(masked.contains('*') && masked != caller.msisdn, "{found}");

    // Opens the case for the caller; the token is not in the answer.
    let (status, opened) = open_for(&stack, &agent, &hotline_body(&caller), Some("call-1")).await;
    assert_eq!(status, 201, "{opened}");
    assert_eq!(opened["state"], "awaiting_identity");
    assert_eq!(opened["channel"], "hotline");
    assert_eq!(opened["identity_check"], "hotline_call");
    assert_eq!(opened["proof_still_needed"], true);
    assert_eq!(opened["token_sent_to"], "contact_on_file");
    assert!(opened.get("case_token").is_none(), "{opened}");
    assert!(!opened.to_string().contains(&caller.msisdn), "{opened}");
    let case = opened["case_id"].as_str().unwrap().to_owned();

    // A retry with the same key is the same case (one case, one token SMS).
    let (status, again) = open_for(&stack, &agent, &hotline_body(&caller), Some("call-1")).await;
    assert_eq!(
        (status, &again["case_id"]),
        (201, &opened["case_id"]),
        "{again}"
    );
    assert!(again.get("case_token").is_none(), "{again}");
    assert_eq!(
        count(&stack, "SELECT count(*) FROM reactivation_cases").await,
        1
    );

    // The caller gets the token by SMS at the contact on file.
    let sms = caller.backup_sms.as_deref().unwrap();
    let token = token_from_sms(&stack, sms).await;
    let (status, seen) = stack.status(&case, &token).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["state"], "awaiting_identity");
    // The hotline call alone did not verify identity.
    assert_eq!(seen["timeline"][0]["actor"], "cs");
    assert_eq!(seen["timeline"].as_array().unwrap().len(), 1);

    // The caller proves with a code and the case runs to the end.
    let (status, sent) = stack.request_otp(&case, &token).await;
    assert_eq!(status, 202, "{sent}");
    let code = stack.latest_code(sms).await;
    let (status, verdict) = stack
        .verify(&case, &token, &json!({"method": "otp", "code": code}))
        .await;
    assert_eq!(
        (status, verdict["accepted"].as_bool()),
        (200, Some(true)),
        "{verdict}"
    );
    let done = stack
        .wait_for_state(&case, &token, "reactivated", SETTLE)
        .await;
    let events: Vec<&str> = done["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["opened", "proofs_accepted", "risk_cleared", "restored"]
    );

    // Now the lookup lists the case, opened by the agent, identity proven.
    let (status, found) = lookup(&stack, &agent, &caller.msisdn).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["cases"][0]["case_id"], case.as_str());
    assert_eq!(found["cases"][0]["state"], "reactivated");
    assert_eq!(found["cases"][0]["channel"], "hotline");
    assert_eq!(found["cases"][0]["opened_by"], "hotline.agent");
    assert_eq!(found["cases"][0]["identity_proven"], true);

    // Audited: the opening (with how identity was checked) and both lookups.
    let opening: (String, Value) = sqlx::query_as(
        "SELECT actor_role::text, detail FROM audit_log WHERE action = 'case.assisted_open'",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(opening.0, "cs");
    assert_eq!(opening.1["identity_check"], "hotline_call");
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM audit_log WHERE action = 'number.lookup'"
        )
        .await,
        2
    );
    // The token never reached the database in clear (only its hash and a sealed SMS).
    let clear: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE payload::text LIKE '%' || $1 || '%'")
            .bind(&token)
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert_eq!(clear, 0);
    let (ok, out) = stack.verify_audit();
    assert!(ok, "{out}");
}

#[tokio::test]
async fn other_roles_bad_input_and_a_spent_lookup_budget_are_refused_and_change_nothing() {
    let stack = Stack::start().await;
    let caller = TestSubscriber::clean(1402);
    stack.add_subscriber(&caller).await;
    stack.create_agent("analyst.x", &["security"]);
    stack.create_agent("tech.x", &["technical"]);
    stack.create_agent("cs.x", &["cs"]);
    stack.create_agent("store.x", &["store"]);
    let analyst = stack.login("analyst.x").await;
    let store = stack.login("store.x").await;
    let tech = stack.login("tech.x").await;
    let cs = stack.login("cs.x").await;

    // Wrong roles: 403 problem+json, nothing opened, nothing audited.
    for token in [&analyst, &tech] {
        let (status, problem) = open_for(&stack, token, &hotline_body(&caller), None).await;
        assert_eq!(status, 403, "{problem}");
        assert_eq!(problem["status"], 403);
        let (status, problem) = lookup(&stack, token, &caller.msisdn).await;
        assert_eq!(status, 403, "{problem}");
    }
    // A store agent looks numbers up but opens no hotline case, and a store case only
    // with the in-person check; a CS agent opens no store case.
    let (status, problem) = open_for(&stack, &store, &hotline_body(&caller), None).await;
    assert_eq!(status, 403, "{problem}");
    let mut at_store = hotline_body(&caller);
    at_store["channel"] = json!("store");
    let (status, problem) = open_for(&stack, &store, &at_store, None).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "identity_check", "{problem}");
    at_store["identity_check"] = json!("in_person_id");
    let (status, problem) = open_for(&stack, &cs, &at_store, None).await;
    assert_eq!(status, 403, "{problem}");
    let (status, found) = lookup(&stack, &store, &caller.msisdn).await;
    assert_eq!(status, 200, "{found}");
    // No session: 401.
    let (status, _) = stack
        .call(
            stack
                .http
                .post(format!("{}/v1/agent/cases", stack.url("gateway")))
                .json(&hotline_body(&caller)),
        )
        .await;
    assert_eq!(status, 401);

    // Bad input: one problem per fact, nothing changed.
    let mut bad_number = hotline_body(&caller);
    bad_number["msisdn"] = json!("12345");
    let mut bad_id = hotline_body(&caller);
    bad_id["id_number"] = json!("110101199001011234");
    let mut web = hotline_body(&caller);
    web["channel"] = json!("web");
    let mut unknown_check = hotline_body(&caller);
    unknown_check["identity_check"] = json!("looked_honest");
    for (body, field) in [
        (&bad_number, "msisdn"),
        (&bad_id, "id_number"),
        (&web, "channel"),
        (&unknown_check, "identity_check"),
    ] {
        let (status, problem) = open_for(&stack, &cs, body, None).await;
        assert_eq!(status, 422, "{problem}");
        assert_eq!(
            problem["type"].as_str().unwrap().rsplit('/').next(),
            Some("validation")
        );
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let mut extra = hotline_body(&caller);
    extra["case_token"] = json!("mine");
    let (status, problem) = open_for(&stack, &cs, &extra, None).await;
    assert_eq!(status, 422, "{problem}");
    let (status, problem) = lookup(&stack, &cs, "not a number").await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "msisdn");
    assert_eq!(
        count(&stack, "SELECT count(*) FROM reactivation_cases").await,
        0
    );
    assert_eq!(count(&stack, "SELECT count(*) FROM outbox").await, 0);
    assert_eq!(
        count(&stack, "SELECT count(*) FROM assisted_openings").await,
        0
    );
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM audit_log WHERE action IN ('number.lookup', 'case.assisted_open')"
        )
        .await,
        1,
        "only the store agent's lookup"
    );

    // Every lookup is audited with the agent and the number masked (sealed, not in clear).
    let (status, _) = lookup(&stack, &cs, &caller.msisdn).await;
    assert_eq!(status, 200);
    let row: (String, Value) =
        sqlx::query_as("SELECT actor_id, detail FROM audit_log WHERE action = 'number.lookup' ORDER BY seq DESC LIMIT 1")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    let cs_id: String = sqlx::query_scalar("SELECT id::text FROM agents WHERE username = 'cs.x'")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(row.0, cs_id);
    assert!(
        !row.1.to_string().contains(&caller.msisdn[3..]),
        "{}",
        row.1
    );
    assert!(row.1["msisdn_masked"].as_str().unwrap().contains('*'));
    assert!(
        row.1["msisdn_sealed"]
            .as_str()
            .is_some_and(|s| s.len() > 32)
    );

    // The lookup budget: 60 an hour per agent, then 429 with Retry-After, not audited.
    for _ in 1..60 {
        let (status, body) = lookup(&stack, &cs, &caller.msisdn).await;
        assert_eq!(status, 200, "{body}");
    }
    let response = stack
        .http
        .post(format!("{}/v1/agent/numbers/lookup", stack.url("gateway")))
        .bearer_auth(&cs)
        .json(&json!({"msisdn": caller.msisdn}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["type"].as_str().unwrap().ends_with("lookup-limit"),
        "{problem}"
    );
    assert_eq!(
        count(
            &stack,
            &format!(
                "SELECT count(*) FROM audit_log WHERE action = 'number.lookup' AND actor_id = '{cs_id}'"
            )
        )
        .await,
        60
    );
    let (ok, out) = stack.verify_audit();
    assert!(ok, "{out}");
}

#[tokio::test]
async fn a_store_agent_opens_a_case_for_a_walk_in_whose_id_card_proves_identity_and_it_is_reactivated()
 {
    let stack = Stack::start().await;
    let walk_in = TestSubscriber::clean(1403);
    stack.add_subscriber(&walk_in).await;
    let stranger = TestSubscriber {
        full_name: "李四".into(),
        id_number: TestSubscriber::clean(1404).id_number,
        ..TestSubscriber::clean(1405)
    };
    stack.add_subscriber(&TestSubscriber::clean(1405)).await;
    stack.create_agent("store.y", &["store"]);
    let store = stack.login("store.y").await;
    let body = |s: &TestSubscriber| {
        json!({
            "msisdn": s.msisdn,
            "full_name": s.full_name,
            "id_number": s.id_number,
            "channel": "store",
            "identity_check": "in_person_id",
            "locale": s.locale,
        })
    };

    let (status, opened) = open_for(&stack, &store, &body(&walk_in), Some("walk-in-1")).await;
    assert_eq!(status, 201, "{opened}");
    assert_eq!(opened["channel"], "store");
    assert_eq!(opened["identity_check"], "in_person_id");
    assert_eq!(opened["proof_still_needed"], false);
    let case = opened["case_id"].as_str().unwrap().to_owned();
    // The token still goes to the contact on file, never to the agent.
    let token = token_from_sms(&stack, walk_in.backup_sms.as_deref().unwrap()).await;
    assert!(!opened.to_string().contains(&token));
    // No code, no password: the card seen in person proved identity.
    let done = stack
        .wait_for_state(&case, &token, "reactivated", SETTLE)
        .await;
    let accepted = done["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "proofs_accepted")
        .cloned()
        .unwrap();
    assert_eq!(
        accepted["reason"],
        "the original ID card was seen in person at a store"
    );
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM number_budget_uses WHERE kind = 'proof'"
        )
        .await,
        0,
        "no online proof was judged"
    );
    assert_eq!(
        stack.sim_subscriber(&walk_in.msisdn).await["status"],
        "active"
    );

    // A card that is not the number's subscriber's proves nothing: the case waits.
    let (status, opened) = open_for(&stack, &store, &body(&stranger), None).await;
    assert_eq!(status, 201, "{opened}");
    let other = opened["case_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let state: String =
        sqlx::query_scalar("SELECT state::text FROM reactivation_cases WHERE id = $1::uuid")
            .bind(&other)
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert_eq!(state, "awaiting_identity");
    let (ok, report) = stack.verify_audit();
    assert!(ok, "{report}");
}
