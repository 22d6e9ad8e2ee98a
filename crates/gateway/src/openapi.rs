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

use crate::{AppState, agent, agent_auth, customer, material};

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
        (name = "agent", description = "The agents' API (CS, security, technical, supervisors, admins); the console uses the same rules")
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
        .routes(routes!(material::add_explanation))
        .routes(
            routes!(material::add_evidence)
                .layer(DefaultBodyLimit::max(material::EVIDENCE_BODY_LIMIT)),
        )
        .routes(routes!(material::appeal))
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
}

/// The documented routes, and the document.
pub fn routes(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let (router, doc) = documented()
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .with_state(state)
        .split_for_parts();
    let served = doc.clone();
    (
        router.route("/openapi.json", get(move || async move { Json(served) })),
        doc,
    )
}

/// The OpenAPI document (for tests and for writing it to docs/).
pub fn api_doc() -> utoipa::openapi::OpenApi {
    documented().split_for_parts().1
}
