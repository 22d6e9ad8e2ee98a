//! The supervisor tools and the complaint and escalation queues in the console, over
//! HTTP: a supervisor reassigns a claimed case with the case page's form (CSRF
//! token included) and the new agent decides it; an escalated case shows on the
//! escalation page; a CS agent logs a hotline complaint from the complaint page and
//! a supervisor answers it there. Pages follow the API's role rules.

use reqwest::{StatusCode, header};
use serde_json::json;
use system_tests::{
    Stack, TestSubscriber,
    console::{client, hidden, login as console_login},
};

async fn page(stack: &Stack, cookie: &str, path: &str) -> (StatusCode, String) {
    let r = client()
        .get(format!("{}{path}", stack.url("gateway")))
        .header(header::COOKIE, cookie)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn submit(
    stack: &Stack,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
) -> (StatusCode, String) {
    let r = client()
        .post(format!("{}{path}", stack.url("gateway")))
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

#[tokio::test]
async fn supervisors_reassign_escalate_and_answer_complaints_in_the_console() {
    let stack = Stack::start().await;
    stack.create_agent("analyst.away", &["security"]);
    stack.create_agent("analyst.here", &["security"]);
    stack.create_agent("cs.one", &["cs"]);
    stack.create_agent("boss.one", &["supervisor"]);
    let away = stack.login("analyst.away").await;
    let here = stack.login("analyst.here").await;
    let boss = console_login(&stack, "boss.one").await;
    let cs = console_login(&stack, "cs.one").await;

    let s = TestSubscriber::flagged(730);
    let (case, token, review) = stack.case_in_security_review(&s).await;
    let version = review["version"].as_i64().unwrap();
    let (status, body) = stack
        .call(
            stack
                .http
                .post(format!(
                    "{}/v1/agent/cases/{case}/claim",
                    stack.url("gateway")
                ))
                .bearer_auth(&away),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // The case page offers the supervisor tools, with the CSRF token.
    let (status, html) = page(&stack, &boss, &format!("/console/cases/{case}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("id=\"supervisor-tools\""), "{html}");
    assert!(html.contains(&format!("/console/cases/{case}/reassign")));
    assert!(
        html.contains("data-action=\"cancel\""),
        "the withdraw action"
    );
    let csrf = hidden(&html, "csrf");
    let v = version.to_string();
    // A form without the token is refused and changes nothing.
    let (status, _) = submit(
        &stack,
        &boss,
        &format!("/console/cases/{case}/reassign"),
        &[
            ("csrf", "forged"),
            ("to", "analyst.here"),
            ("reason", "on leave today"),
            ("expected_version", &v),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = submit(
        &stack,
        &boss,
        &format!("/console/cases/{case}/reassign"),
        &[
            ("csrf", &csrf),
            ("to", "analyst.here"),
            ("reason", "x"),
            ("expected_version", &v),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, location) = submit(
        &stack,
        &boss,
        &format!("/console/cases/{case}/reassign"),
        &[
            ("csrf", &csrf),
            ("to", "analyst.here"),
            ("reason", "analyst.away is on leave"),
            ("expected_version", &v),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    assert!(location.ends_with("?done=reassigned"), "{location}");
    let (_, html) = page(&stack, &boss, &location).await;
    assert!(html.contains("analyst.here"), "the new holder is shown");
    let (status, decided) = stack.act(&here, &case, "approve", version, json!({})).await;
    assert_eq!(status, 200, "{decided}");

    // A CS agent may not see the escalation page, nor use the tools.
    let (status, _) = page(&stack, &cs, "/console/escalations").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Escalate another case from its page; it shows on the escalation page.
    let s2 = TestSubscriber::flagged(731);
    let (case2, _, review2) = stack.case_in_security_review(&s2).await;
    let v2 = review2["version"].as_i64().unwrap().to_string();
    let (status, location) = submit(
        &stack,
        &boss,
        &format!("/console/cases/{case2}/escalate"),
        &[
            ("csrf", &csrf),
            ("reason", "the subscriber called three times"),
            ("expected_version", &v2),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    let (status, html) = page(&stack, &boss, "/console/escalations").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&case2), "{html}");
    assert!(html.contains("the subscriber called three times"));
    assert!(!html.contains(&s2.msisdn[3..]), "numbers are masked");

    // CS logs a hotline complaint about a number; the supervisor answers it.
    let (status, html) = page(&stack, &cs, "/console/complaints").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("id=\"log-complaint\"") && !html.contains("id=\"complaint-queue\""));
    let cs_csrf = hidden(&html, "csrf");
    let caller = TestSubscriber::clean(732);
    stack.add_subscriber(&caller).await;
    let (status, location) = submit(
        &stack,
        &cs,
        "/console/complaints",
        &[
            ("csrf", &cs_csrf),
            ("channel", "hotline"),
            ("msisdn", &caller.msisdn),
            ("locale", "en"),
            ("case_id", ""),
            ("reference", ""),
            ("text", "Nobody is answerable for my number."),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    let (status, html) = page(&stack, &boss, "/console/complaints").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("Nobody is answerable for my number."),
        "{html}"
    );
    assert!(!html.contains(&caller.msisdn[3..]), "numbers are masked");
    let marker = "action=\"/console/complaints/";
    let at = html.find(marker).expect("an answer form") + marker.len();
    let complaint_id = &html[at..at + 36];
    let (status, location) = submit(
        &stack,
        &boss,
        &format!("/console/complaints/{complaint_id}/answer"),
        &[
            ("csrf", &csrf),
            ("answer", "A supervisor owns your request now."),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    let answered: String =
        sqlx::query_scalar("SELECT status FROM case_complaints WHERE id = $1::uuid")
            .bind(complaint_id)
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert_eq!(answered, "answered");
    let _ = token;
}
