//! Who is looking: the token login, its cookie, and the permission checks of pages and actions.
//!
//! The cookie holds the token itself (HttpOnly, SameSite=Strict, Path=/ui; Secure when the
//! server has TLS); every request verifies it again with [`Tokens::verify`], the check of the
//! gRPC layer, so a revoked token stops working once no server caches it any more. Each page and
//! action names the gRPC method whose permission it needs ([`Action`]), and is allowed exactly
//! when that call would be.

use axum::Form;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Console, Failure, page};
use crate::security::auth::{Principal, Refusal, Tokens};
use crate::security::permissions;

/// The name of the cookie holding the token.
const COOKIE: &str = "eventbus_token";

/// What a page shows or an action does, by the gRPC method whose permission it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    ListNamespaces,
    ReadEvents,
    ReadListeners,
    ReadGroups,
    ReadDeadLetters,
    Redrive,
    Seek,
}

impl Action {
    fn method(self) -> &'static str {
        match self {
            Action::ListNamespaces => "/eventbus.v1.EventBusService/ListNamespaces",
            Action::ReadEvents => "/eventbus.v1.EventBusService/ListEvents",
            Action::ReadListeners => "/eventbus.v1.EventBusService/ListListeners",
            Action::ReadGroups => "/eventbus.v1.EventBusService/ListConsumerGroups",
            Action::ReadDeadLetters => "/eventbus.v1.EventBusService/ListDeadLetters",
            Action::Redrive => "/eventbus.v1.EventBusService/RedriveDeadLetters",
            Action::Seek => "/eventbus.v1.EventBusService/SeekConsumerGroup",
        }
    }
}

/// The viewer of a page: the token's principal, or nobody in particular when tokens are off.
#[derive(Debug, Clone)]
pub(super) struct Viewer {
    principal: Option<Principal>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl Viewer {
    /// Returns whether the viewer may do `action` on `namespace` (as the gRPC call would be
    /// allowed).
    pub(super) fn may(&self, action: Action, namespace: &str) -> bool {
        let Some(principal) = &self.principal else { return true };
        let requirement = permissions::requirement(action.method());
        requirement.is_some_and(|r| principal.grants.iter().any(|g| g.allows(r, namespace)))
    }

    /// Fails with 403 unless the viewer may do `action` on `namespace`; logs and counts the
    /// refusal as the gRPC layer does.
    pub(super) fn require(&self, action: Action, namespace: &str) -> Result<(), Failure> {
        if self.may(action, namespace) {
            return Ok(());
        }
        let name = self.principal.as_ref().map_or("", |p| p.name.as_str());
        tracing::info!(principal = name, namespace, method = action.method(), reason = "denied", "console refused");
        self.metrics.auth_refused(Refusal::Denied.reason());
        Err(Failure::new(StatusCode::FORBIDDEN, "your token does not allow this"))
    }

    /// Returns the logged-in name, when tokens are on.
    pub(super) fn name(&self) -> Option<&str> {
        self.principal.as_ref().map(|p| p.name.as_str())
    }

    /// Returns the namespaces the viewer's grants name one by one (patterns left out).
    pub(super) fn granted_namespaces(&self) -> Vec<String> {
        let Some(p) = &self.principal else { return Vec::new() };
        let mut names: Vec<String> =
            p.grants.iter().map(|g| g.namespaces.clone()).filter(|n| !n.contains('*')).collect();
        names.sort();
        names.dedup();
        names
    }

    #[cfg(test)]
    pub(super) fn for_test(principal: Option<Principal>) -> Self {
        Self { principal, metrics: Default::default() }
    }
}

impl FromRequestParts<Console> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Response> {
        let metrics = console.bus.metrics.clone();
        let Some(auth) = &console.auth else { return Ok(Viewer { principal: None, metrics }) };
        let next = parts.uri.path_and_query().map_or("/ui/", |p| p.as_str());
        let login = format!("/ui/login?next={}", page::encode(next));
        let Some(token) = cookie(&parts.headers) else { return Err(Redirect::to(&login).into_response()) };
        match verify(auth.as_ref(), &token, &metrics).await {
            Ok(principal) => Ok(Viewer { principal: Some(principal), metrics }),
            // A token that stopped working (revoked, expired) is forgotten.
            Err(_) => Err(([(header::SET_COOKIE, clear_cookie())], Redirect::to(&login)).into_response()),
        }
    }
}

/// Verifies `token` as the bearer token of a call; logs and counts a refusal.
async fn verify(auth: &Tokens, token: &str, metrics: &crate::metrics::Metrics) -> Result<Principal, Refusal> {
    let result = auth.verify(token).await;
    if let Err(refusal) = &result {
        tracing::info!(reason = refusal.reason(), "console login refused");
        metrics.auth_refused(refusal.reason());
    }
    result
}

/// Returns the token of the console's cookie.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('=').map(str::to_owned))
        .filter(|t| !t.is_empty())
}

fn set_cookie(token: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict{secure}")
}

fn clear_cookie() -> &'static str {
    "eventbus_token=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct LoginQuery {
    next: String,
}

/// Returns where to go after logging in: a console page, never another site.
fn after_login(next: &str) -> &str {
    let inside = next.starts_with("/ui/") && !next.contains("//") && !next.contains('\\');
    if inside { next } else { "/ui/" }
}

pub(super) async fn login_form(State(c): State<Console>, Query(q): Query<LoginQuery>) -> Response {
    if c.auth.is_none() {
        return Redirect::to("/ui/").into_response();
    }
    page::document("Log in", None, login_page(after_login(&q.next), None)).into_response()
}

fn login_page(next: &str, refused: Option<&str>) -> Markup {
    html! {
        section.login {
            h1 { "Log in" }
            p { "This server asks for a token. Paste an eventbus token (" code { "ebt_…" } ")." }
            @if let Some(why) = refused { p.error #login-error { "Refused: " (why) } }
            form method="post" action="/ui/login" {
                input type="hidden" name="next" value=(next);
                label for="token" { "Token" }
                input #token type="password" name="token" autocomplete="off" required autofocus;
                button type="submit" { "Log in" }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    token: String,
    #[serde(default)]
    next: String,
}

pub(super) async fn login(State(c): State<Console>, Form(form): Form<LoginForm>) -> Response {
    let Some(auth) = &c.auth else { return Redirect::to("/ui/").into_response() };
    let next = after_login(&form.next);
    let token = form.token.trim();
    match verify(auth.as_ref(), token, &c.bus.metrics).await {
        Ok(_) => {
            let cookie = set_cookie(token, c.bus.config.tls.is_some());
            ([(header::SET_COOKIE, cookie)], Redirect::to(next)).into_response()
        }
        Err(refusal) => {
            let why = refusal_message(refusal);
            (StatusCode::UNAUTHORIZED, page::document("Log in", None, login_page(next, Some(why)))).into_response()
        }
    }
}

/// What the login form says of a refused token.
fn refusal_message(refusal: Refusal) -> &'static str {
    match refusal {
        Refusal::Missing => "no token given",
        Refusal::Malformed => "malformed token: expected ebt_ and at least 32 letters, digits, '-' or '_'",
        _ => "invalid token",
    }
}

pub(super) async fn logout() -> Response {
    ([(header::SET_COOKIE, clear_cookie())], Redirect::to("/ui/login")).into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::security::permissions::{Grant, Role};

    fn viewer(role: Role, namespaces: &str) -> Viewer {
        let grants = vec![Grant { role, namespaces: namespaces.into() }];
        Viewer::for_test(Some(Principal { name: "t".into(), grants }))
    }

    #[test]
    fn actions_follow_the_grpc_permission_table() {
        use Action::*;
        let cases = [
            (viewer(Role::Reader, "shop"), "shop", [false, true, true, true, false, false, false]),
            (viewer(Role::Reader, "shop"), "other", [false; 7]),
            (viewer(Role::Operator, "shop"), "shop", [false, true, true, true, true, true, true]),
            (viewer(Role::Operator, "*"), "any", [true; 7]),
            (viewer(Role::Publisher, "shop"), "shop", [false; 7]),
            (Viewer::for_test(None), "shop", [true; 7]),
        ];
        let actions = [ListNamespaces, ReadEvents, ReadListeners, ReadGroups, ReadDeadLetters, Redrive, Seek];
        for (viewer, ns, allowed) in cases {
            let got: Vec<bool> = actions.iter().map(|a| viewer.may(*a, ns)).collect();
            assert_eq!(got, allowed, "{viewer:?} on {ns}");
        }
    }

    #[test]
    fn the_cookie_is_found_among_others_and_next_stays_inside() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; eventbus_token=ebt_x; b=2"));
        assert_eq!(cookie(&headers).as_deref(), Some("ebt_x"));
        headers.insert(header::COOKIE, HeaderValue::from_static("eventbus_token="));
        assert_eq!(cookie(&headers), None);
        let cases = [
            ("/ui/ns/a/events?type=x", "/ui/ns/a/events?type=x"),
            ("https://evil.example/", "/ui/"),
            ("//evil.example/ui/", "/ui/"),
            ("/ui//evil", "/ui/"),
            ("", "/ui/"),
        ];
        for (next, want) in cases {
            assert_eq!(after_login(next), want, "{next}");
        }
    }
}
