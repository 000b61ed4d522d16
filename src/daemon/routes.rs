//! The route table of the HTTP server: every route as data ([`ROUTES`]: method, path template
//! as the OpenAPI document writes it, and what serves it), and the one matcher ([`resolve`])
//! the operator API and the streamed answers (the backup, the events export) dispatch through.
//!
//! Guarantees:
//!
//! - the operator API (`server::operator`) answers a route only through [`resolve`] and an
//!   exhaustive `match` on [`Api`]: a route cannot be served without its row here, and a row
//!   cannot be added without its handler (the compiler asks for the arm);
//! - the OpenAPI document (`openapi.json`) lists exactly the rows' paths × methods, both ways
//!   (`the_document_lists_every_route_and_nothing_else` in `openapi.rs`), and every documented
//!   route answers something other than the router's 404 on a running daemon (the integration
//!   test `every_documented_route_is_served`);
//! - [`resolve`] is total: any method and path give a route or `None`, never a panic.
//!
//! The always-open endpoints and the webhook ingress are rows too ([`Target::Open`]):
//! `server::route` resolves every request here first and answers those itself, before the
//! operator API's authentication; outside the table it serves only the console (`/ui`, `/`),
//! a webhook path called with a method it refuses (405) and the operator API's 401/404. Who may call a route (which token, the JSON content type, the push-sync
//! signature) is decided in `server::operator` and `auth`, by method, not here.

use http::Method;

/// What serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Answered by `server::route` before the operator API: health, metrics, webhook ingress.
    Open(Open),
    /// Answered whole by the operator API (`server::operator`), after authentication.
    Api(Api),
    /// Answered by `server::serve_request` as a stream (the backup: admin token; the events
    /// export: either token).
    Streamed(Streamed),
}

/// The routes `server::route` answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// `GET /healthz`.
    Healthz,
    /// `GET /readyz`.
    Readyz,
    /// `GET /metrics`.
    Metrics,
    /// `/api/webhooks/{platform}`, the platform's only integration.
    Webhook,
    /// `/api/webhooks/{platform}/{integration}`.
    WebhookIntegration,
}

/// The streamed routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streamed {
    /// `POST /api/state/backup`.
    StateBackup,
    /// `GET /api/events/export`.
    EventsExport,
}

/// The operator API's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `GET /api/openapi.json`.
    OpenApi,
    /// `GET /api/integrations`.
    Integrations,
    /// `GET /api/integrations/{id}`.
    Integration,
    /// `GET /api/integrations/{id}/health`.
    IntegrationHealth,
    /// `GET /api/integrations/{id}/stats`.
    IntegrationStats,
    /// `POST /api/integrations/{id}/test`.
    IntegrationTest,
    /// `POST /api/integrations/{id}/execute`.
    IntegrationExecute,
    /// `GET /api/integrations/{id}/notion/verification`.
    NotionVerification,
    /// `POST /api/integrations/{id}/notion/expect-verification`.
    NotionExpect,
    /// `POST /api/integrations/{id}/notion/confirm-verification`.
    NotionConfirm,
    /// `POST /api/integrations/{id}/notion/reset-verification`.
    NotionReset,
    /// `GET /api/rules`.
    Rules,
    /// `GET /api/rules/{id}`.
    Rule,
    /// `GET /api/status`.
    Status,
    /// `POST /api/sync`.
    Sync,
    /// `POST /api/pin`.
    Pin,
    /// `DELETE /api/pin`.
    Unpin,
    /// `GET /api/jobs/dead`.
    DeadJobs,
    /// `GET /api/events/dead`: the old name of [`Api::DeadJobs`].
    DeadJobsAlias,
    /// `POST /api/jobs/{job_id}/replay`.
    ReplayJob,
    /// `POST /api/events/{job_id}/replay` (a numeric id only): the old name of
    /// [`Api::ReplayJob`].
    ReplayJobAlias,
    /// `POST /api/jobs/replay-dead`.
    ReplayDead,
    /// `GET /api/events`.
    Events,
    /// `GET /api/events/{id}`.
    Event,
    /// `GET /api/events/{id}/explain`.
    EventExplain,
    /// `GET /api/events/{id}/payload`.
    EventPayload,
    /// `POST /api/events/{id}/redeliver`.
    EventRedeliver,
    /// `GET /api/rollups`.
    Rollups,
    /// `GET /api/audit/logs`.
    AuditLogs,
}

/// One route: a method, a path template (`/api/integrations/{id}/health`: a `{name}` segment
/// matches any one segment), and what serves it.
#[derive(Debug, Clone)]
pub struct Route {
    /// The method.
    pub method: Method,
    /// The path template, as the OpenAPI document's `paths` key.
    pub path: &'static str,
    /// What serves it.
    pub target: Target,
}

const fn row(method: Method, path: &'static str, target: Target) -> Route {
    Route {
        method,
        path,
        target,
    }
}

/// Every route, in matching order: the first row that matches a request serves it (the
/// literal `/api/events/dead` before `/api/events/{id}`).
pub const ROUTES: &[Route] = {
    use Api::*;
    use Method as M;
    use Target::{Api as A, Open as O, Streamed as S};
    &[
        row(M::GET, "/healthz", O(Open::Healthz)),
        row(M::GET, "/readyz", O(Open::Readyz)),
        row(M::GET, "/metrics", O(Open::Metrics)),
        row(M::GET, "/api/webhooks/{platform}", O(Open::Webhook)),
        row(M::HEAD, "/api/webhooks/{platform}", O(Open::Webhook)),
        row(M::POST, "/api/webhooks/{platform}", O(Open::Webhook)),
        row(
            M::GET,
            "/api/webhooks/{platform}/{integration}",
            O(Open::WebhookIntegration),
        ),
        row(
            M::HEAD,
            "/api/webhooks/{platform}/{integration}",
            O(Open::WebhookIntegration),
        ),
        row(
            M::POST,
            "/api/webhooks/{platform}/{integration}",
            O(Open::WebhookIntegration),
        ),
        row(M::POST, "/api/state/backup", S(Streamed::StateBackup)),
        row(M::GET, "/api/events/export", S(Streamed::EventsExport)),
        row(M::GET, "/api/openapi.json", A(OpenApi)),
        row(M::GET, "/api/integrations", A(Integrations)),
        row(M::GET, "/api/integrations/{id}", A(Integration)),
        row(
            M::GET,
            "/api/integrations/{id}/health",
            A(IntegrationHealth),
        ),
        row(M::GET, "/api/integrations/{id}/stats", A(IntegrationStats)),
        row(M::POST, "/api/integrations/{id}/test", A(IntegrationTest)),
        row(
            M::POST,
            "/api/integrations/{id}/execute",
            A(IntegrationExecute),
        ),
        row(
            M::GET,
            "/api/integrations/{id}/notion/verification",
            A(NotionVerification),
        ),
        row(
            M::POST,
            "/api/integrations/{id}/notion/expect-verification",
            A(NotionExpect),
        ),
        row(
            M::POST,
            "/api/integrations/{id}/notion/confirm-verification",
            A(NotionConfirm),
        ),
        row(
            M::POST,
            "/api/integrations/{id}/notion/reset-verification",
            A(NotionReset),
        ),
        row(M::GET, "/api/rules", A(Rules)),
        row(M::GET, "/api/rules/{id}", A(Rule)),
        row(M::GET, "/api/status", A(Status)),
        row(M::POST, "/api/sync", A(Sync)),
        row(M::POST, "/api/pin", A(Pin)),
        row(M::DELETE, "/api/pin", A(Unpin)),
        row(M::GET, "/api/jobs/dead", A(DeadJobs)),
        row(M::GET, "/api/events/dead", A(DeadJobsAlias)),
        row(M::POST, "/api/jobs/replay-dead", A(ReplayDead)),
        row(M::POST, "/api/jobs/{job_id}/replay", A(ReplayJob)),
        row(M::POST, "/api/events/{job_id}/replay", A(ReplayJobAlias)),
        row(M::GET, "/api/events", A(Events)),
        row(M::GET, "/api/events/{id}", A(Event)),
        row(M::GET, "/api/events/{id}/explain", A(EventExplain)),
        row(M::GET, "/api/events/{id}/payload", A(EventPayload)),
        row(M::POST, "/api/events/{id}/redeliver", A(EventRedeliver)),
        row(M::GET, "/api/rollups", A(Rollups)),
        row(M::GET, "/api/audit/logs", A(AuditLogs)),
    ]
};

/// The values of a matched route's `{name}` segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params<'a> {
    values: Vec<(&'static str, &'a str)>,
}

impl<'a> Params<'a> {
    /// The value of the `{name}` segment; empty when the route has none of that name (a
    /// table test checks every dispatch reads names its route has).
    pub fn get(&self, name: &str) -> &'a str {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| *v)
    }
}

/// The route `method` and `segments` (the request path without its leading and trailing `/`,
/// split at `/`, as `server::route` splits it) match, with its parameters; `None`: no row.
pub fn resolve<'a>(method: &Method, segments: &[&'a str]) -> Option<(Target, Params<'a>)> {
    ROUTES.iter().find_map(|r| {
        if r.method != *method {
            return None;
        }
        let template = r.path.trim_matches('/').split('/');
        if template.clone().count() != segments.len() {
            return None;
        }
        let mut values = Vec::new();
        for (t, s) in template.zip(segments) {
            match t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                Some(name) => values.push((name, *s)),
                None if t == *s => {}
                None => return None,
            }
        }
        Some((r.target, Params { values }))
    })
}

/// The `{name}` parameters of a path template, in order.
pub fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// A request path for a row, its parameters filled with `value`.
    fn sample(path: &str, value: &str) -> String {
        path.split('/')
            .map(|s| if s.starts_with('{') { value } else { s })
            .collect::<Vec<_>>()
            .join("/")
    }

    fn segments(path: &str) -> Vec<&str> {
        path.trim_matches('/').split('/').collect()
    }

    #[test]
    fn every_row_is_reached_by_its_own_path() {
        // A numeric id for the job routes, an event id for the others: what the server sees.
        for r in ROUTES {
            let value = if r.path.contains("{job_id}") {
                "42"
            } else {
                "evt_x"
            };
            let path = sample(r.path, value);
            let (target, params) = resolve(&r.method, &segments(&path))
                .unwrap_or_else(|| panic!("{} {path} resolves to nothing", r.method));
            assert_eq!(target, r.target, "{} {path}", r.method);
            for name in path_params(r.path) {
                assert_eq!(params.get(name), value, "{} {}", r.method, r.path);
            }
        }
    }

    #[test]
    fn rows_are_unique_and_well_formed() {
        let mut seen = BTreeSet::new();
        for r in ROUTES {
            assert!(
                seen.insert((r.method.as_str(), r.path)),
                "twice: {} {}",
                r.method,
                r.path
            );
            assert!(
                r.path.starts_with('/') && !r.path.ends_with('/'),
                "{}",
                r.path
            );
            for s in r.path.trim_matches('/').split('/') {
                assert!(!s.is_empty(), "{}", r.path);
                let open = s.starts_with('{');
                assert_eq!(open, s.ends_with('}'), "{}", r.path);
            }
        }
    }

    #[test]
    fn the_literal_routes_win_and_unknown_ones_resolve_to_nothing() {
        let get = |p: &str| resolve(&Method::GET, &segments(p)).map(|(t, _)| t);
        assert_eq!(
            get("/api/events/dead"),
            Some(Target::Api(Api::DeadJobsAlias))
        );
        assert_eq!(get("/api/events/evt_1"), Some(Target::Api(Api::Event)));
        assert_eq!(get("/api/events/"), Some(Target::Api(Api::Events)));
        assert_eq!(get("/api/nothing"), None);
        assert_eq!(get("/api/integrations/a/b/c/d/e"), None);
        assert_eq!(get(""), None);
        assert_eq!(resolve(&Method::PUT, &segments("/api/status")), None);
        let (t, p) = resolve(
            &Method::POST,
            &segments("/api/integrations/notion-wiki/notion/confirm-verification"),
        )
        .unwrap();
        assert_eq!(t, Target::Api(Api::NotionConfirm));
        assert_eq!(p.get("id"), "notion-wiki");
        assert_eq!(p.get("missing"), "");
    }
}
