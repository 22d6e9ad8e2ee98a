//! The role matrix, generated from the gateway's route list: every agent route ×
//! every role × {owner, not owner, anonymous} gives the status its declared access
//! rule says. A route without a declared rule fails the test.

use case_domain::{CaseState, Department, Role, may_act};
use futures_util::StreamExt;
use gateway::{
    access::{Access, rule_for},
    agent::queue_roles,
};
use serde_json::{Value, json};
use system_tests::{AGENT_PASSWORD, Stack, TestSubscriber};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// The acting agent holds the case's claim (when their role can hold one).
    Owner,
    /// Another agent holds it.
    NotOwner,
    /// No session.
    Anonymous,
}

/// The documented 2xx status of an operation.
fn success_status(doc: &Value, path: &str, method: &str) -> u16 {
    doc["paths"][path][method]["responses"]
        .as_object()
        .and_then(|r| {
            r.keys()
                .filter_map(|k| k.parse::<u16>().ok())
                .find(|s| (200..300).contains(s))
        })
        .unwrap_or(200)
}

/// What the rule says, or `None` when only "not refused" can be checked (a route
/// this test has no example request for).
fn expected(
    rule: Access,
    role: Option<Role>,
    who: Who,
    success: u16,
    have_example: bool,
) -> Option<u16> {
    let allowed = match (rule, role) {
        (Access::Public, _) => return Some(if who == Who::Anonymous { 401 } else { success }),
        (_, None) => return Some(401),
        (Access::AnyAgent, Some(_)) => true,
        (Access::Roles(roles), Some(r)) => roles.contains(&r),
        (Access::DepartmentQueue, Some(r)) => queue_roles(Department::Security).contains(&r),
        (Access::CaseWork, Some(r)) => {
            if !may_act(CaseState::SecurityReview, r) {
                return Some(403);
            }
            if who == Who::NotOwner {
                return Some(409);
            }
            true
        }
    };
    if !allowed {
        Some(403)
    } else if have_example {
        Some(success)
    } else {
        None
    }
}

fn role_name(role: Role) -> &'static str {
    role.as_str()
}

/// Trials run at once. Each has its own case, session and claim, so they are
/// independent; run one after the other they took about two minutes.
const TRIALS_AT_ONCE: usize = 6;

/// One cell of the matrix.
struct Trial<'a> {
    path: &'a str,
    method: &'a str,
    rule: Access,
    success: u16,
    role: Option<Role>,
    who: Who,
    n: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_agent_route_answers_every_role_as_its_rule_says() {
    let stack = Stack::start().await;
    for role in Role::AGENT_ROLES {
        stack.create_agent(&format!("{}.actor", role_name(role)), &[role_name(role)]);
    }
    stack.create_agent("supervisor.other", &["supervisor"]);
    let other = stack.login("supervisor.other").await;
    let gateway = stack.url("gateway").to_owned();
    let (_, doc) = stack
        .call(stack.http.get(format!("{gateway}/openapi.json")))
        .await;
    let doc_paths: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(p, _)| p.starts_with("/v1/agent/"))
        .flat_map(|(p, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| (p.clone(), m.clone()))
        })
        .collect();
    assert!(doc_paths.len() >= 10, "{doc_paths:?}");

    let mut n = 500;
    let mut trials = Vec::new();
    let mut missing_rules = Vec::new();
    for (path, method) in &doc_paths {
        let Some(rule) = rule_for(method, path) else {
            missing_rules.push(format!("{method} {path}"));
            continue;
        };
        let success = success_status(&doc, path, method);
        for role in Role::AGENT_ROLES.iter().copied().map(Some).chain([None]) {
            for who in [Who::Owner, Who::NotOwner, Who::Anonymous] {
                if (role.is_none()) != (who == Who::Anonymous) {
                    continue;
                }
                // Every trial gets its own case in security_review, so claims never interfere.
                n += 1;
                trials.push(Trial {
                    path,
                    method,
                    rule,
                    success,
                    role,
                    who,
                    n,
                });
            }
        }
    }
    assert!(
        missing_rules.is_empty(),
        "agent routes without an access rule: {missing_rules:?}"
    );
    let checked = futures_util::stream::iter(&trials)
        .map(|t| run_trial(&stack, &gateway, &other, t))
        .buffer_unordered(TRIALS_AT_ONCE)
        .count()
        .await;
    assert!(checked >= doc_paths.len() * 6);
}

/// Sets the trial's case up, sends its request, and checks the answer against the rule.
async fn run_trial(stack: &Stack, gateway: &str, other: &str, t: &Trial<'_>) {
    let Trial {
        path,
        method,
        rule,
        success,
        role,
        who,
        n,
    } = *t;
    let (case, version) = fresh_case(stack, n).await;
    let token = match role {
        Some(r) => Some(stack.login(&format!("{}.actor", role_name(r))).await),
        None => None,
    };
    // Who holds the case.
    let claim_url = format!("{gateway}/v1/agent/cases/{case}/claim");
    match (who, role) {
        (Who::Owner, Some(r)) if may_act(CaseState::SecurityReview, r) => {
            let (status, body) = stack
                .call(
                    stack
                        .http
                        .post(&claim_url)
                        .bearer_auth(token.as_deref().unwrap()),
                )
                .await;
            assert_eq!(status, 200, "owner claim: {body}");
        }
        (Who::NotOwner, _) => {
            let (status, body) = stack
                .call(stack.http.post(&claim_url).bearer_auth(other))
                .await;
            assert_eq!(status, 200, "other claim: {body}");
        }
        _ => {}
    }
    let url = format!("{gateway}{}", fill_path(path, &case));
    let (body, have_example): (Option<Value>, bool) = match path {
        "/v1/agent/login" => {
            let username = role.map_or("nobody".to_owned(), |r| format!("{}.actor", role_name(r)));
            let password = if role.is_some() {
                AGENT_PASSWORD
            } else {
                "wrong-password-123"
            };
            (
                Some(json!({"username": username, "password": password})),
                true,
            )
        }
        "/v1/agent/logout" | "/v1/agent/queue" | "/v1/agent/reports/false-positives" => {
            (None, true)
        }
        "/v1/agent/cases/{case_id}"
        | "/v1/agent/cases/{case_id}/claim"
        | "/v1/agent/cases/{case_id}/release" => (None, true),
        "/v1/agent/cases/{case_id}/actions" => (
            Some(
                json!({"action": "request_info", "reason": "Please explain the contacts.", "expected_version": version}),
            ),
            true,
        ),
        "/v1/agent/cases/{case_id}/notes" => (Some(json!({"body": "called the subscriber"})), true),
        "/v1/agent/cases/{case_id}/unmask" => (Some(json!({"reason": "role matrix test"})), true),
        _ => (Some(json!({})), false),
    };
    let mut request = stack
        .http
        .request(method.to_uppercase().parse().unwrap(), &url);
    if path == "/v1/agent/queue" {
        request = request.query(&[("department", "security")]);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    if let Some(t) = &token {
        request = request.bearer_auth(t);
    }
    // A live stream never ends: read only its status (and the problem body when refused).
    let (status, answer) = if path.ends_with("/events") {
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let body = if status >= 400 {
            response.json().await.unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        (status, body)
    } else {
        stack.call(request).await
    };
    match expected(rule, role, who, success, have_example) {
        Some(want) => assert_eq!(
            status, want,
            "{method} {path} as {role:?} ({who:?}): {answer}"
        ),
        None => assert!(
            ![401, 403].contains(&status),
            "{method} {path} as {role:?} ({who:?}) was refused: {answer}"
        ),
    }
    if status >= 400 {
        assert_eq!(
            answer["status"].as_u64(),
            Some(u64::from(status)),
            "problem+json expected: {answer}"
        );
    }
}

/// A new case in security_review: (id, version).
async fn fresh_case(stack: &Stack, n: u32) -> (String, i64) {
    let s = TestSubscriber::flagged(n);
    let (case, _token, status) = stack.case_in_security_review(&s).await;
    (case, status["version"].as_i64().unwrap())
}

/// The path with `{case_id}` set to the trial's case and every other parameter to the nil id.
fn fill_path(path: &str, case: &str) -> String {
    path.split('/')
        .map(|segment| match segment {
            "{case_id}" => case.to_owned(),
            s if s.starts_with('{') => uuid::Uuid::nil().to_string(),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}
