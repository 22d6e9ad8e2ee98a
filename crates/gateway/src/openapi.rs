//! The OpenAPI 3 document, generated from the handlers' annotations, and the router
//! built from the same list, so a route cannot exist without being documented.

use axum::{Json, Router, extract::DefaultBodyLimit, routing::get};
use serde::Serialize;
use utoipa::{
    Modify, OpenApi, ToSchema,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::{
    router::{OpenApiRouter, UtoipaMethodRouterExt},
    routes,
};

use crate::{
    AppState, agent, agent_auth, complaints, customer, dead_letters, dossier, escalations, live,
    material, store_visits,
};

/// RFC 9457 problem details, the body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemDoc {
    /// Stable URI of the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short, stable summary.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Reactivation gateway", description = "Phone-number reactivation cases: the customer API, agent API and carrier webhooks."),
    modifiers(&SecuritySchemes),
    tags(
        (name = "customer", description = "The subscriber's API (carrier web page and app)"),
        (name = "agent", description = "The agents' API (CS, security, technical, supervisors, admins); the console uses the same rules"),
        (name = "webhooks", description = "Carrier webhooks in (Standard Webhooks), and the admin API of outbound webhook endpoints")
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "case_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The case token from POST /v1/cases"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "agent_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The session token from POST /v1/agent/login (the console uses a cookie)",
                    ))
                    .build(),
            ),
        );
    }
}

/// JSON bodies of the customer API are small.
const JSON_BODY_LIMIT: usize = 16 * 1024;

/// Every documented route. Add new routes here (and only here): the router and the
/// OpenAPI document are both built from this list.
fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(customer::create_case))
        .routes(routes!(customer::get_case))
        .routes(routes!(customer::send_otp))
        .routes(routes!(customer::verify))
        .routes(routes!(customer::cancel))
        .routes(routes!(customer::start_recovery))
        .routes(routes!(customer::finish_recovery))
        .routes(routes!(material::add_explanation).map(material::statement_route))
        .routes(routes!(material::add_evidence).map(material::evidence_route))
        .routes(routes!(material::appeal).map(material::statement_route))
        .routes(routes!(agent_auth::login))
        .routes(routes!(agent_auth::logout))
        .routes(routes!(agent::queue))
        .routes(routes!(agent::get_case))
        .routes(routes!(agent::act))
        .routes(routes!(agent::claim))
        .routes(routes!(agent::release))
        .routes(routes!(agent::add_note))
        .routes(routes!(agent::unmask))
        .routes(routes!(agent::false_positives))
        .routes(routes!(crate::reports::report))
        .routes(routes!(crate::reports::export_cases))
        .routes(routes!(
            crate::risk_rules::risk_rules,
            crate::risk_rules::change_risk_rules
        ))
        .routes(routes!(crate::risk_rules::replay_risk_rules))
        .routes(routes!(escalations::escalations))
        .routes(routes!(store_visits::lookup))
        .routes(routes!(store_visits::record))
        .routes(routes!(complaints::create, complaints::list_mine))
        .routes(routes!(crate::progress::expedite))
        .routes(routes!(complaints::answer))
        .routes(routes!(complaints::queue, complaints::log))
        .routes(routes!(complaints::answer_by_id))
        .routes(routes!(crate::supervision::reassign))
        .routes(routes!(crate::supervision::break_claim))
        .routes(routes!(crate::supervision::escalate))
        .routes(routes!(dossier::export))
        .routes(routes!(live::customer_events))
        .routes(routes!(live::agent_events))
        .routes(routes!(crate::webhooks::receive_carrier))
        .routes(routes!(
            crate::webhooks::create_endpoint,
            crate::webhooks::list_endpoints
        ))
        .routes(routes!(crate::webhooks::delete_endpoint))
        .routes(routes!(crate::webhooks::rotate_secret))
        .routes(routes!(crate::webhooks::deliveries))
        .routes(routes!(dead_letters::list))
        .routes(routes!(dead_letters::retry))
        .routes(routes!(crate::audit::query))
        .routes(routes!(crate::accounts::list, crate::accounts::create))
        .routes(routes!(crate::accounts::disable))
        .routes(routes!(crate::accounts::enable))
        .routes(routes!(crate::accounts::set_roles))
        .routes(routes!(crate::accounts::reset_password))
        .routes(routes!(crate::assisted::lookup))
        .routes(routes!(crate::assisted::open))
}

/// Adds the rate limits' `429` to every operation that draws on a budget
/// ([`crate::rate_limit::classify`]), so the document says what the middleware does.
fn document_rate_limits(doc: &mut utoipa::openapi::OpenApi) {
    use axum::http::Method;
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    const WHY: &str = "Too many requests from this client address (`rate-limited`); `Retry-After` says when to come back";
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            (Method::GET, &mut item.get),
            (Method::POST, &mut item.post),
            (Method::PUT, &mut item.put),
            (Method::PATCH, &mut item.patch),
            (Method::DELETE, &mut item.delete),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation.as_mut() else {
                continue;
            };
            if crate::rate_limit::classify(&method, path).is_none() {
                continue;
            }
            let responses = &mut operation.responses.responses;
            match responses.get_mut("429") {
                Some(RefOr::T(response)) => {
                    response.description = format!("{}; or: {WHY}.", response.description);
                }
                Some(RefOr::Ref(_)) => {}
                None => {
                    let response = ResponseBuilder::new()
                        .description(format!("{WHY}."))
                        .content(
                            "application/problem+json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ProblemDoc")))
                                .build(),
                        )
                        .build();
                    responses.insert("429".into(), RefOr::T(response));
                }
            }
        }
    }
}

/// The documented routes, and the document.
pub fn routes(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let (router, mut doc) = documented()
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .with_state(state.clone())
        .split_for_parts();
    document_rate_limits(&mut doc);
    // Every agent route's declared access rule runs before its handler (deny by default).
    let router = router.route_layer(axum::middleware::from_fn_with_state(
        state,
        crate::access::enforce,
    ));
    let served = doc.clone();
    (
        router.route("/openapi.json", get(move || async move { Json(served) })),
        doc,
    )
}

/// The OpenAPI document (for tests and for writing it to docs/).
pub fn api_doc() -> utoipa::openapi::OpenApi {
    let mut doc = documented().split_for_parts().1;
    document_rate_limits(&mut doc);
    doc
}
