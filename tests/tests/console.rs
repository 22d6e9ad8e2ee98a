//! The agent console over real HTTP (the browser journey is in tests/browser):
//! session cookie flags, CSRF and origin checks on every form, the same role rules
//! as the API (a tampered form is 403), unmasking with an audit row, evidence
//! served with its type and sandboxed, languages, logout, and no console route in
//! the OpenAPI document.

use reqwest::{StatusCode, header};
use system_tests::{
    AGENT_PASSWORD, Stack, TestSubscriber,
    console::{client, hidden},
};

fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect()
}

fn cookie_value(set_cookie: &[String], name: &str) -> Option<String> {
    set_cookie.iter().find_map(|c| {
        c.split(';')
            .next()
            .and_then(|kv| kv.split_once('='))
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    })
}

struct Agent {
    cookie: String,
}

/// Logs in through the console's form; `https` sends `X-Forwarded-Proto: https`.
async fn console_login(stack: &Stack, username: &str, https: bool) -> (Agent, Vec<String>) {
    let http = client();
    let gw = stack.url("gateway");
    let page = http
        .get(format!("{gw}/console/login"))
        .send()
        .await
        .expect("login page");
    assert_eq!(page.status(), StatusCode::OK);
    let login_cookie =
        cookie_value(&set_cookies(&page), "reactivation_login_csrf").expect("login csrf cookie");
    let html = page.text().await.expect("html");
    let token = hidden(&html, "login_csrf");
    assert_eq!(token, login_cookie);
    let mut request = http
        .post(format!("{gw}/console/login"))
        .header(
            header::COOKIE,
            format!("reactivation_login_csrf={login_cookie}"),
        )
        .form(&[
            ("username", username),
            ("password", AGENT_PASSWORD),
            ("login_csrf", &token),
            ("next", ""),
        ]);
    if https {
        request = request.header("x-forwarded-proto", "https");
    }
    let answer = request.send().await.expect("login");
    assert_eq!(answer.status(), StatusCode::SEE_OTHER, "login {username}");
    let cookies = set_cookies(&answer);
    let session = cookie_value(&cookies, "reactivation_session").expect("session cookie");
    (
        Agent {
            cookie: format!("reactivation_session={session}"),
        },
        cookies,
    )
}

async fn get(
    stack: &Stack,
    agent: Option<&Agent>,
    path: &str,
) -> (StatusCode, String, reqwest::header::HeaderMap) {
    let mut request = client().get(format!("{}{path}", stack.url("gateway")));
    if let Some(a) = agent {
        request = request.header(header::COOKIE, &a.cookie);
    }
    let r = request.send().await.expect("get");
    let (status, headers) = (r.status(), r.headers().clone());
    (status, r.text().await.unwrap_or_default(), headers)
}

async fn post(
    stack: &Stack,
    agent: &Agent,
    path: &str,
    form: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> (StatusCode, String, reqwest::header::HeaderMap) {
    let mut request = client()
        .post(format!("{}{path}", stack.url("gateway")))
        .header(header::COOKIE, &agent.cookie)
        .form(form);
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    let r = request.send().await.expect("post");
    let (status, headers) = (r.status(), r.headers().clone());
    (status, r.text().await.unwrap_or_default(), headers)
}

#[tokio::test]
async fn the_console_enforces_sessions_csrf_and_the_api_rules() {
    let stack = Stack::start().await;
    stack.create_agent("console.analyst", &["security"]);
    stack.create_agent("console.tech", &["technical"]);
    stack.create_agent("console.boss", &["supervisor"]);
    let gw = stack.url("gateway").to_owned();

    // No session: pages send the agent to the login page, with the way back.
    let r = client()
        .get(format!("{gw}/console/queue?department=security"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()[header::LOCATION],
        "/console/login?next=%2Fconsole%2Fqueue%3Fdepartment%3Dsecurity"
    );

    // The session cookie: HttpOnly, SameSite=Strict, Path=/, Secure behind TLS only.
    let (analyst, cookies) = console_login(&stack, "console.analyst", true).await;
    let session = cookies
        .iter()
        .find(|c| c.starts_with("reactivation_session="))
        .unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
        assert!(session.contains(flag), "{flag} missing in {session}");
    }
    let (tech, cookies) = console_login(&stack, "console.tech", false).await;
    let session = cookies
        .iter()
        .find(|c| c.starts_with("reactivation_session="))
        .unwrap();
    assert!(!session.contains("Secure"), "{session}");

    // Bad credentials: one generic answer; a login form from elsewhere: 403.
    let page = client()
        .get(format!("{gw}/console/login?lang=en"))
        .send()
        .await
        .unwrap();
    let login_cookie = cookie_value(&set_cookies(&page), "reactivation_login_csrf").unwrap();
    let token = hidden(&page.text().await.unwrap(), "login_csrf");
    for (user, password, origin, expected) in [
        (
            "console.analyst",
            "wrong-password-1",
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "nobody.here",
            "wrong-password-1",
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "console.analyst",
            AGENT_PASSWORD,
            Some("http://evil.example"),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let mut request = client()
            .post(format!("{gw}/console/login?lang=en"))
            .header(
                header::COOKIE,
                format!("reactivation_login_csrf={login_cookie}"),
            )
            .form(&[
                ("username", user),
                ("password", password),
                ("login_csrf", &token),
            ]);
        if let Some(o) = origin {
            request = request.header(header::ORIGIN, o);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), expected, "{user}");
        let body = r.text().await.unwrap();
        if expected == StatusCode::UNAUTHORIZED {
            assert!(body.contains("Login failed."), "{body}");
        }
    }

    // A flagged case in security review, with a PDF document.
    let s = TestSubscriber::flagged(700);
    let (case, token, review) = stack.case_in_security_review(&s).await;
    let pdf: &[u8] =
        b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";
    stack.upload_pdf(&case, &token, "payslip.pdf", pdf).await;
    // An explanation too: sealed at rest, like the file.
    stack
        .explain(&case, &token, "Sealed-statement: my cousin runs a shop.")
        .await;
    let at_rest: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM case_evidence e WHERE e.case_id = $1::uuid AND e.sealed
                    AND position($2::bytea IN e.content) = 0),
                (SELECT count(*) FROM case_explanations x WHERE x.case_id = $1::uuid
                    AND x.body_sealed IS NOT NULL AND row_to_json(x)::text NOT LIKE '%Sealed-statement%')",
    )
    .bind(&case)
    .bind(&pdf[..8])
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(at_rest, (1, 1), "evidence and explanation sealed at rest");
    let version = stack.status(&case, &token).await.1["version"]
        .as_i64()
        .unwrap()
        .to_string();
    let _ = &review;

    // The technical agent: no decision buttons; a hand-made approve with their own
    // valid CSRF token is refused like the API refuses it.
    let (status, html, headers) = get(
        &stack,
        Some(&tech),
        &format!("/console/cases/{case}?lang=en"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("frame-ancestors")
    );
    assert!(!html.contains("data-action=\"approve\""));
    let tech_csrf = hidden(&html, "csrf");
    let (status, _, _) = post(
        &stack,
        &tech,
        &format!("/console/cases/{case}/actions"),
        &[
            ("csrf", &tech_csrf),
            ("action", "approve"),
            ("expected_version", &version),
        ],
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = get(&stack, Some(&tech), "/console/queue?department=security").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = get(&stack, Some(&tech), "/console/dashboard").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The analyst sees the decisions; the technical agent's token is not theirs.
    let (status, html, _) = get(
        &stack,
        Some(&analyst),
        &format!("/console/cases/{case}?lang=en"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("data-action=\"approve\""));
    assert!(
        html.contains(&s.msisdn[..3]) && !html.contains(&s.msisdn),
        "the number is masked"
    );
    assert!(
        html.contains("Sealed-statement: my cousin runs a shop."),
        "the sealed explanation reads in the console"
    );
    let csrf = hidden(&html, "csrf");
    assert_ne!(csrf, tech_csrf);
    let note = |token: String, headers: Vec<(&'static str, &'static str)>| {
        let (stack, analyst, case) = (&stack, &analyst, &case);
        async move {
            post(
                stack,
                analyst,
                &format!("/console/cases/{case}/notes"),
                &[("csrf", token.as_str()), ("body", "checked the payslip")],
                &headers,
            )
            .await
            .0
        }
    };
    assert_eq!(note(tech_csrf.clone(), vec![]).await, StatusCode::FORBIDDEN);
    assert_eq!(note(String::new(), vec![]).await, StatusCode::FORBIDDEN);
    assert_eq!(
        note(csrf.clone(), vec![("sec-fetch-site", "cross-site")]).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        note(csrf.clone(), vec![("origin", "http://evil.example")]).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        note(csrf.clone(), vec![("sec-fetch-site", "same-origin")]).await,
        StatusCode::SEE_OTHER
    );
    let (_, html, _) = get(&stack, Some(&analyst), &format!("/console/cases/{case}")).await;
    assert_eq!(
        html.matches("checked the payslip").count(),
        1,
        "one note, from the accepted form"
    );

    // Evidence: the stored bytes, their type, sandboxed, never sniffed; agents only.
    let start = html.find("/evidence/").expect("evidence link");
    let evidence_path = format!(
        "/console/cases/{case}{}",
        &html[start..start + html[start..].find('"').unwrap()]
    );
    let r = client()
        .get(format!("{gw}{evidence_path}"))
        .header(header::COOKIE, &analyst.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "application/pdf");
    assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], "sandbox");
    assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(r.bytes().await.unwrap().as_ref(), pdf);
    let (status, _, _) = get(&stack, None, &evidence_path).await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // Unmask: a reason is required; the clear values are shown once and audited.
    let unmask = format!("/console/cases/{case}/unmask");
    let (status, _, _) = post(
        &stack,
        &analyst,
        &unmask,
        &[("csrf", &csrf), ("reason", "no")],
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, html, headers) = post(
        &stack,
        &analyst,
        &unmask,
        &[
            ("csrf", &csrf),
            ("reason", "caller on the hotline, confirming the holder"),
        ],
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert!(html.contains(&s.msisdn) && html.contains(&s.full_name) && html.contains(&s.id_number));
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'case.unmask' AND case_id = $1::uuid AND reason = $2",
    )
    .bind(&case)
    .bind("caller on the hotline, confirming the holder")
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(audited, 1);
    let (status, _, _) = post(
        &stack,
        &tech,
        &unmask,
        &[("csrf", &tech_csrf), ("reason", "just curious about it")],
        &[],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "technical staff may not unmask"
    );

    // A stale form: 409 with the page telling to reload; nothing changes.
    let stale = (review["version"].as_i64().unwrap() + 1).to_string();
    let (status, html, _) = post(
        &stack,
        &analyst,
        &format!("/console/cases/{case}/actions?lang=en"),
        &[
            ("csrf", &csrf),
            ("action", "approve"),
            ("expected_version", &stale),
        ],
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(html.contains("Reload it"), "{html}");

    // Languages: ?lang= (remembered in a cookie), else Accept-Language.
    let r = client()
        .get(format!("{gw}/console/login?lang=zh-CN"))
        .send()
        .await
        .unwrap();
    assert!(
        set_cookies(&r)
            .iter()
            .any(|c| c.starts_with("reactivation_lang=zh-CN"))
    );
    assert!(r.text().await.unwrap().contains("<html lang=\"zh-CN\">"));
    let r = client()
        .get(format!("{gw}/console/login"))
        .header(header::ACCEPT_LANGUAGE, "en-GB,en;q=0.9")
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("<html lang=\"en\">"));

    // The supervisor's dashboard; console routes are not API routes.
    let (boss, _) = console_login(&stack, "console.boss", false).await;
    let (status, html, _) = get(&stack, Some(&boss), "/console/dashboard?lang=en").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("<svg") && html.contains("Security review"),
        "{html}"
    );
    let (_, doc) = stack
        .call(stack.http.get(format!("{gw}/openapi.json")))
        .await;
    assert!(
        doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .all(|p| !p.starts_with("/console")),
        "console routes are not in the OpenAPI document"
    );

    // Logout ends the session.
    let (status, _, _) = post(&stack, &analyst, "/console/logout", &[("csrf", &csrf)], &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = get(&stack, Some(&analyst), &format!("/console/cases/{case}")).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "back to the login page");
}

#[tokio::test]
async fn the_identity_review_page_shows_the_facts_and_the_verify_form_asks_how() {
    let stack = Stack::start().await;
    stack.create_agent("console.cs", &["cs"]);
    let s = TestSubscriber::clean(41);
    stack.add_subscriber(&s).await;
    let (case, token) = stack.open_case(&s).await;
    assert_eq!(stack.request_otp(&case, &token).await.0, 202);
    let real = stack.latest_code(s.backup_sms.as_deref().unwrap()).await;
    let wrong = if real == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let (status, answer) = stack
            .verify(
                &case,
                &token,
                &serde_json::json!({"method": "otp", "code": wrong}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    stack
        .wait_for_state(
            &case,
            &token,
            "identity_review",
            std::time::Duration::from_secs(20),
        )
        .await;

    let (cs, _) = console_login(&stack, "console.cs", false).await;
    let (status, html, _) = get(&stack, Some(&cs), &format!("/console/cases/{case}?lang=en")).await;
    assert_eq!(status, StatusCode::OK);
    // The carrier's answer on name and ID, and the five failed proofs.
    assert!(
        html.contains("id=\"name-id-match\" data-match=\"matched\""),
        "{html}"
    );
    assert_eq!(
        html.matches("<tr data-outcome=\"failed\">").count(),
        5,
        "{html}"
    );
    // The verify form asks how identity was checked, from the policy's list.
    assert!(html.contains("data-action=\"verify_identity\""), "{html}");
    assert!(html.contains("name=\"identity_check\""), "{html}");
    for code in [
        "original_id_in_person",
        "callback_to_contact_on_file",
        "video_call_face_match",
        "documents_reviewed",
    ] {
        assert!(
            html.contains(&format!("<option value=\"{code}\">")),
            "{code}"
        );
    }
    let csrf = hidden(&html, "csrf");
    let version = hidden(&html, "expected_version");
    let path = format!("/console/cases/{case}/actions?lang=en");
    // Without saying how: 422, nothing changes.
    let (status, html, _) = post(
        &stack,
        &cs,
        &path,
        &[
            ("csrf", &csrf),
            ("action", "verify_identity"),
            ("expected_version", &version),
            ("identity_check", ""),
            ("reason", "looked fine"),
        ],
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("identity_check"), "{html}");
    assert_eq!(
        stack.status(&case, &token).await.1["state"],
        "identity_review"
    );
    let (status, _, _) = post(
        &stack,
        &cs,
        &path,
        &[
            ("csrf", &csrf),
            ("action", "verify_identity"),
            ("expected_version", &version),
            ("identity_check", "original_id_in_person"),
            ("reason", "store 7"),
        ],
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let timeline = stack.status(&case, &token).await.1["timeline"].clone();
    let verified = timeline
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "identity_verified")
        .expect("identity_verified in the timeline")
        .clone();
    assert!(
        verified["reason"]
            .as_str()
            .unwrap()
            .contains("original ID document seen in person"),
        "{verified}"
    );
}
