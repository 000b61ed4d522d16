//! The operator console under `/ui/`: server-rendered HTML pages (maud, auto-escaped) over the
//! operator API's data (the same builders as `daemon::api` and `runtime::history`), a stylesheet
//! and a small optional script compiled into the binary (`layout`), sign-in with the admin or
//! the read-only token and server-side sessions (`session`), and the pages (`overview`,
//! `integration`, `rules`, `events`, `dead`, `audit`, and the API reference of
//! `daemon::openapi`). docs/console.md describes it.
//!
//! Every answer carries a strict Content-Security-Policy (`default-src 'self'`, no inline
//! script), `X-Frame-Options: DENY`, `Referrer-Policy: same-origin` (a browser then sends the
//! pages' own `Origin` with their forms, and no address to another site) and
//! `X-Content-Type-Options: nosniff`; pages are `Cache-Control: no-store` and say how long they
//! took to render (`Server-Timing: render;dur=<ms>`). A request that changes something is a
//! `POST` form from a signed-in session that may change things, carrying the session's CSRF
//! token, with no foreign `Origin`: anything else is refused with 403 before anything is done.
//! No secret value (credentials, tokens, webhook secrets, session ids) is ever rendered: the
//! views are the operator API's, which show them as `(sensitive)` or leave them out.

mod audit;
pub mod chart;
mod dead;
mod events;
mod integration;
pub mod layout;
mod overview;
mod rules;
pub mod session;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use hyper::body::Incoming;
use maud::{Markup, PreEscaped, html};
use serde_json::json;

use super::auth::{self, Access, Caller};
use crate::runtime::{Runtime, now_ms};
use crate::state::AuditKind;
use crate::webhook::{Reply, reply};
use layout::Frame;
use session::{Attempts, Session, Sessions};

/// The Content-Security-Policy of every console answer.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The largest form body accepted.
const MAX_FORM: usize = 16 * 1024;

/// What the console keeps between requests: sessions, failed sign-ins, flash messages, and the
/// author and message of the applied commit. One daemon per process: the console serves the
/// runtime it is handed, and the sessions are the process's.
#[derive(Debug, Default)]
struct Console {
    sessions: Sessions,
    attempts: Attempts,
    /// A message for a session's next page (keyed by the session's CSRF token, which is as
    /// unguessable as its id and never leaves the session's pages).
    flashes: Mutex<HashMap<String, (String, bool)>>,
    /// The applied commit's author, message and time, read once per commit.
    commit: Mutex<Option<(String, Option<crate::manifest::source::CommitSummary>)>>,
}

static CONSOLE: LazyLock<Console> = LazyLock::new(Console::default);

impl Console {
    fn flash(&self, session: &Session, text: String, error: bool) {
        let mut flashes = self.flashes.lock().unwrap_or_else(PoisonError::into_inner);
        if flashes.len() >= session::MAX_SESSIONS {
            flashes.clear();
        }
        flashes.insert(session.csrf.clone(), (text, error));
    }

    fn take_flash(&self, session: &Session) -> Option<(String, bool)> {
        self.flashes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&session.csrf)
    }
}

/// A signed-in request: its session and the frame its page is drawn in.
pub(crate) struct Ctx {
    /// The session id (from the cookie; only to end the session, never rendered).
    id: String,
    session: Session,
    frame: Frame,
    caller: Caller,
}

impl Ctx {
    /// Whether this session may see and use controls that change something.
    pub(crate) fn may_change(&self) -> bool {
        self.session.may_change()
    }

    /// The session's CSRF token, for hidden fields.
    pub(crate) fn csrf(&self) -> &str {
        &self.session.csrf
    }

    /// A page in the shared frame, `current` being its navigation entry.
    pub(crate) fn page(&mut self, current: &'static str, title: &str, body: Markup) -> Markup {
        self.frame.current = current;
        layout::page(title, &self.frame, body)
    }
}

/// Serves `/ui` and everything under it.
pub async fn serve(rt: &Arc<Runtime>, peer: SocketAddr, req: Request<Incoming>) -> Reply {
    let started = tokio::time::Instant::now();
    let mut answer = route(rt, peer, req).await;
    secure(answer.headers_mut(), started);
    answer
}

/// `GET /`: a redirect to the console.
pub fn to_console() -> Reply {
    redirect("/ui/", StatusCode::SEE_OTHER)
}

/// The security headers of every answer, and `Server-Timing` and `no-store` on pages.
fn secure(h: &mut HeaderMap, started: tokio::time::Instant) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if let Ok(v) = HeaderValue::from_str(&format!("render;dur={ms:.1}")) {
            h.insert("server-timing", v);
        }
    }
}

async fn route(rt: &Arc<Runtime>, peer: SocketAddr, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_owned();
    let Some(rest) = path.strip_prefix("/ui") else {
        return not_found_bare();
    };
    if rest.is_empty() {
        return redirect("/ui/", StatusCode::PERMANENT_REDIRECT);
    }
    if !rest.starts_with('/') {
        return not_found_bare();
    }
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method().clone();
    match (&method, segments.as_slice()) {
        (&Method::GET | &Method::HEAD, ["assets", name]) => return asset(name, req.headers()),
        (&Method::GET, ["login"]) => return login_page(rt, peer, &req, None, StatusCode::OK),
        (&Method::POST, ["login"]) => return login(rt, peer, req).await,
        _ => {}
    }
    let Some(mut ctx) = signed_in(rt, peer, &req) else {
        if method == Method::GET || method == Method::HEAD {
            let target = match req.uri().query() {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            };
            let next: String = form_urlencoded::byte_serialize(target.as_bytes()).collect();
            return redirect(&format!("/ui/login?next={next}"), StatusCode::SEE_OTHER);
        }
        return refused(
            StatusCode::FORBIDDEN,
            "You are not signed in (or your session has ended): nothing was changed. Sign in again.",
        );
    };
    if method == Method::POST {
        let (parts, body) = req.into_parts();
        let form = match crate::webhook::read_body(
            &parts.headers,
            body,
            MAX_FORM,
            rt.options.read_timeout,
        )
        .await
        {
            Ok(body) => form(&body),
            Err(e) => return crate::webhook::status(e.status()),
        };
        // Signing out changes nothing but the session: the read-only token may.
        let changes = segments.as_slice() != ["logout"];
        if let Err(why) = may_post(rt, &parts.headers, &ctx, &form, changes) {
            return refused(StatusCode::FORBIDDEN, why);
        }
        return post(rt, &mut ctx, &segments).await;
    }
    if method != Method::GET && method != Method::HEAD {
        return refused(
            StatusCode::METHOD_NOT_ALLOWED,
            "The console answers GET and POST only.",
        );
    }
    let query = req.uri().query().unwrap_or("").to_owned();
    match segments.as_slice() {
        [] => html_reply(StatusCode::OK, overview::page(rt, &mut ctx)),
        ["integrations", id] => integration::page(rt, &mut ctx, id, None),
        ["rules"] => rules::list(rt, &mut ctx, &query),
        ["rules", id] => rules::one(rt, &mut ctx, id),
        ["events"] => events::list(rt, &mut ctx, &query).await,
        ["events", id] => events::trace(rt, &mut ctx, id).await,
        ["dead-letters"] => dead::list(rt, &mut ctx),
        ["audit"] => audit::list(rt, &mut ctx, &query).await,
        ["api"] => api_reference(&mut ctx),
        _ => not_found(&mut ctx, "There is no such page in the console."),
    }
}

/// The API reference, rendered once from the compiled-in OpenAPI document
/// ([`crate::daemon::openapi::reference`]).
static API_REFERENCE: LazyLock<String> = LazyLock::new(|| {
    crate::daemon::openapi::reference(crate::daemon::openapi::document()).into_string()
});

/// `GET /ui/api`: the operator API's reference (`/api/openapi.json`, for people).
fn api_reference(ctx: &mut Ctx) -> Reply {
    let body = html! {
        p.muted {
            "Every route of the daemon's HTTP API, from its OpenAPI 3.1 document ("
            a href="/api/openapi.json" { "/api/openapi.json" }
            ", for tools; it needs a token like every operator route). Send the admin or read-only token as "
            code { "Authorization: Bearer …" } "; a change also needs " code { "Content-Type: application/json" } "."
        }
        div.api-reference { (PreEscaped(API_REFERENCE.as_str())) }
    };
    let page = ctx.page("/ui/api", "API reference", body);
    html_reply(StatusCode::OK, page)
}

/// The POST routes, once the request is known to be allowed.
async fn post(rt: &Arc<Runtime>, ctx: &mut Ctx, segments: &[&str]) -> Reply {
    match segments {
        ["logout"] => logout(rt, ctx),
        ["integrations", id, "test"] => {
            let id = (*id).to_owned();
            integration::test(rt, ctx, &id).await
        }
        ["dead-letters", "replay-all"] => dead::replay_all(rt, ctx).await,
        ["dead-letters", job, "replay"] => {
            let job = (*job).to_owned();
            dead::replay(rt, ctx, &job).await
        }
        _ => not_found(ctx, "There is no such action in the console."),
    }
}

/// Whether a POST may go ahead: a session that may change things (when it `changes` more than
/// the session), no foreign `Origin` (or `Sec-Fetch-Site`), and the session's CSRF token in the
/// form.
fn may_post(
    rt: &Runtime,
    headers: &HeaderMap,
    ctx: &Ctx,
    form: &HashMap<String, String>,
    changes: bool,
) -> Result<(), &'static str> {
    if changes && !ctx.may_change() {
        return Err(
            "You are signed in read-only: this changes something, so it needs the admin token. Nothing was changed.",
        );
    }
    if !same_origin(rt, headers) {
        return Err("This request came from another site: nothing was changed.");
    }
    let given = form.get("csrf").map(String::as_str).unwrap_or("");
    if !ctx.session.csrf_ok(given) {
        return Err(
            "This form is out of date or was not sent by the console (its CSRF token is missing or wrong): nothing was changed. Reload the page and try again.",
        );
    }
    Ok(())
}

/// Whether the browser says the request comes from the daemon's own pages: no `Origin`, or
/// one equal to the public URL's origin or (for a loopback `Host`) `http(s)://<Host>`; and no
/// `Sec-Fetch-Site` other than `same-origin` or `none`.
fn same_origin(rt: &Runtime, headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    if origin.eq_ignore_ascii_case(&origin_of(&rt.options.public_url)) {
        return true;
    }
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| auth::is_loopback_authority(h))
        .is_some_and(|host| {
            origin.eq_ignore_ascii_case(&format!("http://{host}"))
                || origin.eq_ignore_ascii_case(&format!("https://{host}"))
        })
}

/// `scheme://authority` of a URL (the URL itself, without a trailing slash, when it has no
/// path).
fn origin_of(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.trim_end_matches('/').to_owned();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    format!("{scheme}://{authority}")
}

/// Whether the session cookie should be `Secure`: the public URL is https.
fn secure_cookie(rt: &Runtime) -> bool {
    rt.options
        .public_url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// The session of a request, if it is signed in (a live session named by its cookie). In the
/// tokenless loopback mode the request must also be plainly local (as the API checks).
fn signed_in<B>(rt: &Runtime, peer: SocketAddr, req: &Request<B>) -> Option<Ctx> {
    let id = session::from_cookies(req.headers())?;
    let session = CONSOLE.sessions.get(&id, now_ms())?;
    if session.access == Access::LoopbackWithoutToken
        && !plainly_local(rt, peer, req.headers(), req.uri())
    {
        return None;
    }
    let flash = CONSOLE.take_flash(&session);
    let frame = Frame {
        revision: rt.active().and_then(|a| a.commit.clone()),
        access: Some(session.access),
        csrf: session.csrf.clone(),
        flash,
        current: "",
    };
    Some(Ctx {
        id,
        caller: Caller {
            peer,
            access: session.access,
            by: "console",
        },
        session,
        frame,
    })
}

/// Whether the daemon has no admin token and this request is plainly local: what the API's
/// tokenless loopback mode serves (loopback peer and `Host`, no forwarding header).
fn plainly_local(rt: &Runtime, peer: SocketAddr, headers: &HeaderMap, uri: &http::Uri) -> bool {
    if headers.contains_key(header::AUTHORIZATION) {
        return false;
    }
    matches!(
        auth::authenticate(&rt.options, peer, headers, uri),
        Ok(Caller {
            access: Access::LoopbackWithoutToken,
            ..
        })
    )
}

fn form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A page's answer.
pub(crate) fn html_reply(code: StatusCode, page: Markup) -> Reply {
    reply(code, "text/html; charset=utf-8", page.into_string())
}

fn redirect(to: &str, code: StatusCode) -> Reply {
    let mut r = reply(code, "text/plain; charset=utf-8", format!("See {to}\n"));
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// After a change: back to `to` (a console path), where the flash message says what happened.
pub(crate) fn done(ctx: &Ctx, to: &str, text: String, error: bool) -> Reply {
    CONSOLE.flash(&ctx.session, text, error);
    redirect(to, StatusCode::SEE_OTHER)
}

/// A refusal page outside the frame (signed out, or before anything is known of the session).
fn refused(code: StatusCode, why: &str) -> Reply {
    let frame = Frame::default();
    html_reply(
        code,
        layout::page(
            "Refused",
            &frame,
            html! {
                (layout::error_box(why))
                p { a href="/ui/" { "Back to the console" } }
            },
        ),
    )
}

fn not_found_bare() -> Reply {
    refused(
        StatusCode::NOT_FOUND,
        "There is no such page in the console.",
    )
}

/// A 404 page in the frame.
pub(crate) fn not_found(ctx: &mut Ctx, why: &str) -> Reply {
    let page = ctx.page(
        "",
        "Not found",
        html! {
            (layout::empty(why))
            p { a href="/ui/" { "Back to the overview" } }
        },
    );
    html_reply(StatusCode::NOT_FOUND, page)
}

/// A 500 page in the frame: what failed, in words; the details are in the daemon's log.
pub(crate) fn failed(ctx: &mut Ctx, what: &str, e: &dyn std::fmt::Display) -> Reply {
    tracing::error!(error = %e, "Console: {what} failed.");
    let page = ctx.page(
        "",
        "Something went wrong",
        html! {
            (layout::error_box(&format!("{what} failed; the daemon's log says why.")))
            p { a href="/ui/" { "Back to the overview" } }
        },
    );
    html_reply(StatusCode::INTERNAL_SERVER_ERROR, page)
}

/// `GET /ui/assets/{name}`: the stylesheet or the script, cached for a year (the name changes
/// with the content), with an ETag.
fn asset(name: &str, headers: &HeaderMap) -> Reply {
    let Some(a) = layout::ASSETS.iter().find(|a| a.name == name) else {
        return not_found_bare();
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == a.etag.as_bytes());
    let mut r = if fresh {
        crate::webhook::status(StatusCode::NOT_MODIFIED)
    } else {
        reply(StatusCode::OK, a.content_type, a.body)
    };
    let h = r.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if let Ok(v) = HeaderValue::from_str(&a.etag) {
        h.insert(header::ETAG, v);
    }
    r
}

/// Where to go after signing in: `next` when it is a console path (`/ui/…`, no scheme, no
/// host, no `//` or backslash tricks), else the overview.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if (n == "/ui" || n.starts_with("/ui/"))
                && !n.contains("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/ui/".to_owned(),
    }
}

fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `GET /ui/login`: the sign-in form (and, in the tokenless loopback mode for a plainly local
/// request, a button to sign in without a token).
fn login_page<B>(
    rt: &Runtime,
    peer: SocketAddr,
    req: &Request<B>,
    error: Option<&str>,
    code: StatusCode,
) -> Reply {
    let next = safe_next(query_value(req.uri().query(), "next").as_deref());
    let local =
        rt.options.admin_token.is_none() && plainly_local(rt, peer, req.headers(), req.uri());
    login_reply(&next, local, error, code)
}

fn login_reply(next: &str, local: bool, error: Option<&str>, code: StatusCode) -> Reply {
    let body = html! {
        div.login.panel {
            @if let Some(e) = error {
                p #login-error .error-box role="alert" { (e) }
            }
            form #login method="post" action="/ui/login" {
                input type="hidden" name="next" value=(next);
                label for="token" { "Token" }
                input #token type="password" name="token" autocomplete="current-password"
                    autofocus required[!local] aria-describedby="token-hint";
                p #token-hint .hint {
                    "The daemon's admin token (everything) or its read-only token (every page, no changes)."
                }
                button #sign-in type="submit" { "Sign in" }
                @if local {
                    p.hint {
                        "This daemon has no admin token and you are connected from this machine: you may sign in without one."
                    }
                    button.secondary type="submit" name="local" value="1" { "Sign in without a token" }
                }
            }
        }
    };
    html_reply(code, layout::page("Sign in", &Frame::default(), body))
}

/// `POST /ui/login`: checks the token (constant time, through `auth::authenticate`), limits
/// failures per peer, creates a session and sets its cookie; audited either way (never the
/// token).
async fn login(rt: &Arc<Runtime>, peer: SocketAddr, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let form =
        match crate::webhook::read_body(&parts.headers, body, MAX_FORM, rt.options.read_timeout)
            .await
        {
            Ok(body) => form(&body),
            Err(e) => return crate::webhook::status(e.status()),
        };
    let next = safe_next(form.get("next").map(String::as_str));
    let now = now_ms();
    let local_mode = rt.options.admin_token.is_none();
    let local = local_mode && plainly_local(rt, peer, &parts.headers, &parts.uri);
    let audit = |kind: AuditKind, access: Option<Access>, more: serde_json::Value| {
        let mut detail = json!({"by": "console", "peer": peer.to_string()});
        if let Some(a) = access {
            detail["token"] = json!(a.as_str());
        }
        if let (Some(d), serde_json::Value::Object(more)) = (detail.as_object_mut(), more) {
            d.extend(more);
        }
        rt.record_audit(now, kind, "console", "login", detail);
    };
    if !same_origin(rt, &parts.headers) {
        return login_reply(
            &next,
            local,
            Some("This sign-in came from another site and was refused."),
            StatusCode::FORBIDDEN,
        );
    }
    if !CONSOLE.attempts.allowed(peer.ip(), now) {
        audit(
            AuditKind::ConsoleSignInFailed {
                reason: "rate_limited".into(),
            },
            None,
            json!({}),
        );
        return login_reply(
            &next,
            local,
            Some("Too many failed sign-ins from your address: wait a few minutes and try again."),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let token = form.get("token").map(String::as_str).unwrap_or("");
    let access = if token.is_empty() {
        if form.get("local").is_some_and(|v| v == "1") && local {
            Some(Access::LoopbackWithoutToken)
        } else {
            None
        }
    } else {
        // The API's own check: both tokens compared in constant time.
        let mut headers = HeaderMap::new();
        match HeaderValue::from_str(&format!("Bearer {token}")) {
            Ok(v) => {
                headers.insert(header::AUTHORIZATION, v);
                auth::authenticate(&rt.options, peer, &headers, &parts.uri)
                    .ok()
                    .map(|c| c.access)
            }
            Err(_) => None,
        }
    };
    let Some(access) = access else {
        CONSOLE.attempts.failed(peer.ip(), now);
        let reason = if token.is_empty() && form.contains_key("local") {
            "not_local"
        } else {
            "wrong_token"
        };
        audit(
            AuditKind::ConsoleSignInFailed {
                reason: reason.into(),
            },
            None,
            json!({}),
        );
        let message = if token.is_empty() && !local {
            "Enter a token."
        } else {
            "That token is neither this daemon's admin token nor its read-only token."
        };
        return login_reply(&next, local, Some(message), StatusCode::UNAUTHORIZED);
    };
    let (id, _) = match CONSOLE.sessions.create(access, now) {
        Ok(created) => created,
        Err(e) => {
            tracing::error!(error = %e, "Console: no random bytes for a session id.");
            return login_reply(
                &next,
                local,
                Some("The daemon could not create a session; its log says why."),
                StatusCode::INTERNAL_SERVER_ERROR,
            );
        }
    };
    CONSOLE.attempts.succeeded(peer.ip());
    audit(AuditKind::ConsoleSignedIn, Some(access), json!({}));
    let mut r = redirect(&next, StatusCode::SEE_OTHER);
    if let Ok(v) = HeaderValue::from_str(&session::cookie(&id, secure_cookie(rt))) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `POST /ui/logout`: ends the session, clears the cookie, audited.
fn logout(rt: &Runtime, ctx: &Ctx) -> Reply {
    CONSOLE.sessions.end(&ctx.id);
    let mut r = redirect("/ui/login", StatusCode::SEE_OTHER);
    rt.record_audit(
        now_ms(),
        AuditKind::ConsoleSignedOut,
        "console",
        "login",
        json!({"by": "console", "peer": ctx.caller.peer.to_string(), "token": ctx.session.access.as_str()}),
    );
    if let Ok(v) = HeaderValue::from_str(&session::cleared_cookie(secure_cookie(rt))) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_only_ever_a_console_path() {
        assert_eq!(
            safe_next(Some("/ui/events?integration=a")),
            "/ui/events?integration=a"
        );
        assert_eq!(safe_next(Some("/ui")), "/ui");
        for bad in [
            "https://evil.example/",
            "//evil.example/ui/",
            "/ui//evil.example",
            "/\\evil.example",
            "/ui/\\evil",
            "/api/status",
            "/uix",
            "javascript:alert(1)",
            "/ui/\nSet-Cookie:x",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/ui/");
    }

    #[test]
    fn origins() {
        assert_eq!(
            origin_of("https://ops.example.com/base/"),
            "https://ops.example.com"
        );
        assert_eq!(origin_of("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
    }
}
