//! The web console at `/ui`: server-rendered HTML pages over the same handlers as gRPC, per
//! namespace: events (filtered, paged, followed live, one at a time with its data), listeners
//! (with the partial state of ALL listeners) and consumer groups (backlog, dead letters with a
//! redrive action, seek).
//!
//! - Every read and action goes through the service's `*_inner` methods, so validation,
//!   namespace isolation and errors are those of the gRPC calls; errors render as a page with
//!   the HTTP status of their gRPC code ([`crate::status::http_status`]).
//! - With tokens on, a login form keeps the token in an HttpOnly, SameSite=Strict cookie; each
//!   page and action checks the role its gRPC method needs in [`crate::security::permissions`],
//!   and buttons the viewer's role could not use are not shown ([`session`]).
//! - Everything is in the binary (HTML in Rust with `maud`, which escapes every value; CSS, JS
//!   and the icon embedded): the page loads nothing from elsewhere, and its Content-Security-
//!   Policy forbids it to.
//!
//! Hazard: POST actions change state. They are refused unless the browser says they come from
//! a console page (`Sec-Fetch-Site: same-origin`, or an `Origin` equal to the `Host`), on top of
//! the SameSite cookie, so another site cannot make a logged-in browser redrive or seek.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;

use crate::security::auth::Tokens;
use crate::service::EventBus;
use crate::status::ApiError;

mod events;
mod groups;
mod listeners;
mod page;
mod session;

use session::{Action, Viewer};

/// The path the console is served under.
pub const BASE: &str = "/ui";

/// What every handler shares.
#[derive(Debug, Clone)]
struct Console {
    bus: EventBus,
    auth: Option<Arc<Tokens>>,
}

/// Returns the console's routes, all under [`BASE`], checking tokens with `tokens` (none: no
/// login, everything allowed, as on the gRPC listener).
pub fn router(bus: EventBus, auth: Option<Arc<Tokens>>) -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(namespaces))
        .route("/ui/open", get(open))
        .route("/ui/login", get(session::login_form).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/assets/{file}", get(asset))
        .route("/ui/ns/{ns}", get(|Path(namespace): Path<String>| open(Query(OpenQuery { namespace }))))
        .route("/ui/ns/{ns}/events", get(events::list))
        .route("/ui/ns/{ns}/events/rows", get(events::rows))
        .route("/ui/ns/{ns}/events/{seq}", get(events::show))
        .route("/ui/ns/{ns}/listeners", get(listeners::list))
        .route("/ui/ns/{ns}/listeners/{id}", get(listeners::show))
        .route("/ui/ns/{ns}/groups", get(groups::list))
        .route("/ui/ns/{ns}/groups/{group}", get(groups::show))
        .route("/ui/ns/{ns}/groups/{group}/redrive", post(groups::redrive))
        .route("/ui/ns/{ns}/groups/{group}/seek", post(groups::seek))
        .route("/ui/{*rest}", get(|| async { Failure::new(StatusCode::NOT_FOUND, "no such page") }))
        .layer(middleware::from_fn(guard))
        .with_state(Console { bus, auth })
}

/// Refuses cross-site POSTs and puts the security headers on every answer.
async fn guard(req: Request, next: Next) -> Response {
    if req.method() == Method::POST && !same_origin(req.headers()) {
        tracing::info!(path = %req.uri().path(), "console: cross-site POST refused");
        return Failure::new(StatusCode::FORBIDDEN, "cross-site request refused: use the console's own forms")
            .into_response();
    }
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    let policy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                  form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Returns whether the browser says the request comes from a page of this origin.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site == "same-origin";
    }
    let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST)) else { return false };
    let (Ok(origin), Ok(host)) = (origin.to_str(), host.to_str()) else { return false };
    origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host)
}

/// The embedded files of the console.
async fn asset(Path(file): Path<String>) -> Response {
    let (content_type, body): (&str, &'static str) = match file.as_str() {
        "console.css" => ("text/css; charset=utf-8", include_str!("console/assets/console.css")),
        "console.js" => ("text/javascript; charset=utf-8", include_str!("console/assets/console.js")),
        "icon.svg" => ("image/svg+xml", include_str!("console/assets/icon.svg")),
        _ => return Failure::new(StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "max-age=3600")], body).into_response()
}

/// A page that could not be shown: its status and what to tell the reader.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        // The gRPC status logs internal errors and masks them, as for a call.
        let status = tonic::Status::from(e);
        Self::new(crate::status::http_status(status.code()), status.message())
    }
}

impl From<eventbus_engine::Error> for Failure {
    fn from(e: eventbus_engine::Error) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("error");
        let body = html! {
            section.failure {
                h1 { (self.status.as_u16()) " " (title) }
                p.message { (self.message) }
                p { a href="/ui/" { "Back to the namespaces" } }
            }
        };
        (self.status, page::document(title, None, body)).into_response()
    }
}

type Answer = Result<Markup, Failure>;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NamespacesQuery {
    page_token: String,
}

/// The namespace picker: every namespace when the viewer may list them (as ListNamespaces),
/// else the namespaces their grants name; and a form to open one by name.
async fn namespaces(State(c): State<Console>, viewer: Viewer, Query(q): Query<NamespacesQuery>) -> Answer {
    let listing = if viewer.may(Action::ListNamespaces, "") {
        let req = eventbus_client::pb::ListNamespacesRequest { page_size: 100, page_token: q.page_token };
        Some(c.bus.list_namespaces_inner(req).await?)
    } else {
        None
    };
    Ok(page::document("Namespaces", Some(&viewer), page::namespaces(listing.as_ref(), &viewer.granted_namespaces())))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OpenQuery {
    namespace: String,
}

/// Opens the namespace named in the picker's form.
async fn open(Query(q): Query<OpenQuery>) -> Result<Redirect, Failure> {
    let ns = crate::request::namespace(q.namespace.trim().to_owned()).map_err(ApiError::from)?;
    Ok(Redirect::to(&format!("/ui/ns/{ns}/events")))
}
