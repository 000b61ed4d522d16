//! Who is calling the operator API, and what they may do: the API trusts a token, not an
//! address (boundary 3 of the security model, docs/security.md; SEC-05, SEC-16, SEC-18).
//!
//! - `Authorization: Bearer <admin token>` may do everything; `Bearer <read token>` may use
//!   the safe methods (`GET`, `HEAD`) and gets 403 on anything else. A bearer token that is
//!   neither gets a bare 401. Tokens are compared with [`constant_time_eq`], which hides
//!   their lengths too.
//! - Without an `Authorization` header the request is refused (401) when an admin token is
//!   configured. Without one — the tokenless loopback mode, which `supportopsd run` allows
//!   only when its listen address and public URL are both loopback — only a request that is
//!   plainly local is served: from a loopback peer (else 401), addressed to a loopback `Host`
//!   (else 421: a DNS-rebinding page names the attacker's host) and relayed by no proxy (any
//!   forwarding header → 403).
//! - A request that changes something carries `Content-Type: application/json` (else 415), so
//!   that a web page cannot send one without the browser asking first (no form or text CSRF).
//!   The signed push-sync webhook is authenticated by its signature instead and exempt.
//!
//! A [`Caller`] is what audit records name: the peer address and the kind of token, never the
//! token itself.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, Method, StatusCode, Uri, header};
use serde_json::{Value, json};

use crate::runtime::Options;
use crate::secrets::constant_time_eq;
use crate::webhook::{Reply, reply, status};

/// Headers a reverse proxy adds: their presence means the peer address is the proxy's, not
/// the client's, so the tokenless loopback mode refuses the request.
pub const FORWARDING_HEADERS: [&str; 5] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
];

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The admin token: every route.
    Admin,
    /// The read-only token: `GET` routes only.
    Read,
    /// A git host's push webhook signed with the sync secret: `POST /api/sync` only.
    SyncSignature,
    /// No token, in the tokenless loopback mode (no admin token configured).
    LoopbackWithoutToken,
}

impl Access {
    /// The name audit records use.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Admin => "admin",
            Access::Read => "read",
            Access::SyncSignature => "sync_signature",
            Access::LoopbackWithoutToken => "loopback_without_token",
        }
    }

    /// Whether this caller may change anything (call a method other than `GET`/`HEAD`).
    pub fn may_change(self) -> bool {
        !matches!(self, Access::Read)
    }
}

/// What audit records name as the way in of an operator API caller.
pub const OPERATOR_API: &str = "operator api";

/// Who called: the peer address and how they were let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The TCP peer (with a reverse proxy in front, the proxy).
    pub peer: SocketAddr,
    /// Which token (or signature) let them in.
    pub access: Access,
    /// Through what: `"operator api"`, or `"console"` (a signed-in browser, `daemon::console`).
    pub by: &'static str,
}

impl Caller {
    /// What audit records say about the caller: `{"by", "peer", "token"}` (`token` names the
    /// kind of token, never its value), with the fields of the object `more` added.
    pub fn audit(&self, more: Value) -> Value {
        let mut detail = json!({
            "by": self.by,
            "peer": self.peer.to_string(),
            "token": self.access.as_str(),
        });
        if let (Some(d), Value::Object(more)) = (detail.as_object_mut(), more) {
            d.extend(more);
        }
        detail
    }
}

/// Why a request is not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token, a wrong token, or (tokenless) a peer that is not loopback: a bare 401.
    Unauthorized,
    /// Tokenless mode, and a proxy relayed the request (the header named): 403.
    Forwarded(&'static str),
    /// Tokenless mode, and the request was addressed to a host that is not loopback: 421.
    NotLoopbackHost,
}

impl Refusal {
    /// The answer.
    pub fn reply(self) -> Reply {
        match self {
            Refusal::Unauthorized => status(StatusCode::UNAUTHORIZED),
            Refusal::Forwarded(name) => error(
                StatusCode::FORBIDDEN,
                &format!(
                    "this daemon has no admin token, so its API answers only local clients that connect directly; \
                     a request relayed by a proxy (it carries `{name}`) is refused. Set SUPPORTOPSD_ADMIN_TOKEN \
                     (or $CREDENTIALS_DIRECTORY/admin.token) and send it as `Authorization: Bearer …`"
                ),
            ),
            Refusal::NotLoopbackHost => error(
                StatusCode::MISDIRECTED_REQUEST,
                "this daemon has no admin token, so its API answers only requests addressed to \
                 localhost, 127.0.0.1 or [::1] (any other Host header may be a DNS-rebinding web page). \
                 Use a loopback address, or set SUPPORTOPSD_ADMIN_TOKEN (or $CREDENTIALS_DIRECTORY/admin.token) \
                 and send it as `Authorization: Bearer …`",
            ),
        }
    }
}

fn error(code: StatusCode, message: &str) -> Reply {
    reply(
        code,
        "application/json",
        serde_json::to_vec_pretty(&json!({ "error": message })).unwrap_or_default(),
    )
}

/// The bearer token of an `Authorization` header value (the scheme is case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    let (scheme, token) = value.split_at_checked(SCHEME.len())?;
    scheme.eq_ignore_ascii_case(SCHEME).then_some(token)
}

/// Who is calling, or why they may not.
pub fn authenticate(
    options: &Options,
    peer: SocketAddr,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Caller, Refusal> {
    let caller = |access| {
        Ok(Caller {
            peer,
            access,
            by: OPERATOR_API,
        })
    };
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let Some(given) = bearer(value.as_bytes()) else {
            return Err(Refusal::Unauthorized);
        };
        // Both comparisons always run, so timing does not say which token was close.
        let admin = options
            .admin_token
            .as_ref()
            .is_some_and(|t| constant_time_eq(given, t.expose()));
        let read = options
            .read_token
            .as_ref()
            .is_some_and(|t| constant_time_eq(given, t.expose()));
        return match (admin, read) {
            (true, _) => caller(Access::Admin),
            (false, true) => caller(Access::Read),
            (false, false) => Err(Refusal::Unauthorized),
        };
    }
    if options.admin_token.is_some() || !peer.ip().is_loopback() {
        return Err(Refusal::Unauthorized);
    }
    if let Some(name) = FORWARDING_HEADERS
        .iter()
        .find(|name| headers.contains_key(**name))
    {
        return Err(Refusal::Forwarded(name));
    }
    let hosts_local = headers
        .get_all(header::HOST)
        .iter()
        .all(|h| h.to_str().is_ok_and(is_loopback_authority))
        && uri
            .authority()
            .is_none_or(|a| is_loopback_authority(a.as_str()));
    if !hosts_local {
        return Err(Refusal::NotLoopbackHost);
    }
    caller(Access::LoopbackWithoutToken)
}

/// Whether `authority` (`host`, `host:port`, `[v6]:port`) names this machine's loopback:
/// `localhost` or a loopback address.
pub fn is_loopback_authority(authority: &str) -> bool {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, port)) if port.is_empty() || port.strip_prefix(':').is_some_and(is_port) => {
                v6
            }
            _ => return false,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if is_port(port) => host,
            Some(_) => return false,
            None => authority,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `method` only reads (what the read-only token may call).
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

/// Whether the request says its body is JSON (`application/json`, parameters allowed).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// The answer to a change without a JSON content type.
pub fn not_json() -> Reply {
    error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "requests that change something must be sent with `Content-Type: application/json` \
         (a web page cannot send that to another site without the browser asking first)",
    )
}

/// The answer to the read-only token asking for a change.
pub fn read_only() -> Reply {
    error(
        StatusCode::FORBIDDEN,
        "the read-only token can read (GET) but not change anything; this request needs the admin token",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secret;

    fn options(admin: Option<&str>, read: Option<&str>) -> Options {
        let mut o = Options::new(
            "127.0.0.1:0".parse().unwrap(),
            String::new(),
            ".".into(),
            ".".into(),
        );
        o.admin_token = admin.map(|t| Secret::from(t.to_owned()));
        o.read_token = read.map(|t| Secret::from(t.to_owned()));
        o
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    const LOCAL: &str = "127.0.0.1:40000";
    const REMOTE: &str = "192.0.2.7:40000";

    fn auth(o: &Options, peer: &str, h: &[(&'static str, &str)]) -> Result<Access, Refusal> {
        let uri: Uri = "/api/status".parse().unwrap();
        authenticate(o, peer.parse().unwrap(), &headers(h), &uri).map(|c| c.access)
    }

    #[test]
    fn tokens_decide_the_access() {
        let o = options(Some("admin-secret"), Some("read-secret"));
        let bearer = |t: &str| format!("Bearer {t}");
        for peer in [LOCAL, REMOTE] {
            assert_eq!(
                auth(&o, peer, &[("authorization", &bearer("admin-secret"))]),
                Ok(Access::Admin)
            );
            assert_eq!(
                auth(&o, peer, &[("authorization", "bearer read-secret")]),
                Ok(Access::Read)
            );
            for wrong in [
                "Bearer admin-secre",
                "Bearer ",
                "Basic admin-secret",
                "admin-secret",
            ] {
                assert_eq!(
                    auth(&o, peer, &[("authorization", wrong)]),
                    Err(Refusal::Unauthorized),
                    "{wrong}"
                );
            }
            // An admin token configured: no header is no entry, even from loopback.
            assert_eq!(auth(&o, peer, &[]), Err(Refusal::Unauthorized));
        }
    }

    #[test]
    fn tokenless_mode_serves_only_plainly_local_requests() {
        let o = options(None, Some("read-secret"));
        assert_eq!(
            auth(&o, LOCAL, &[("host", "127.0.0.1:8080")]),
            Ok(Access::LoopbackWithoutToken)
        );
        assert_eq!(auth(&o, LOCAL, &[]), Ok(Access::LoopbackWithoutToken));
        assert_eq!(
            auth(&o, LOCAL, &[("authorization", "Bearer read-secret")]),
            Ok(Access::Read)
        );
        assert_eq!(
            auth(&o, LOCAL, &[("authorization", "Bearer guess")]),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(
            auth(&o, REMOTE, &[("host", "localhost")]),
            Err(Refusal::Unauthorized)
        );
        for host in [
            "rebind.attacker.example",
            "rebind.attacker.example:8080",
            "10.0.0.1",
        ] {
            assert_eq!(
                auth(&o, LOCAL, &[("host", host)]),
                Err(Refusal::NotLoopbackHost),
                "{host}"
            );
        }
        for name in FORWARDING_HEADERS {
            assert_eq!(
                auth(
                    &o,
                    LOCAL,
                    &[("host", "localhost:8080"), (name, "203.0.113.9")]
                ),
                Err(Refusal::Forwarded(name)),
                "{name}"
            );
        }
        // An absolute-form request target names its host too.
        let uri: Uri = "http://rebind.attacker.example/api/status".parse().unwrap();
        assert_eq!(
            authenticate(
                &o,
                LOCAL.parse().unwrap(),
                &headers(&[("host", "localhost")]),
                &uri
            ),
            Err(Refusal::NotLoopbackHost)
        );
    }

    #[test]
    fn loopback_authorities() {
        for yes in [
            "localhost",
            "LOCALHOST:8080",
            "localhost.",
            "127.0.0.1",
            "127.8.9.10:1",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(is_loopback_authority(yes), "{yes}");
        }
        for no in [
            "",
            "localhost.attacker.example",
            "127.0.0.1.nip.io",
            "10.0.0.1:8080",
            "[::2]:80",
            "[::1]x",
            "[::1]8080",
            "localhost:",
            "localhost:http",
            "ops.example.com",
            "0.0.0.0",
        ] {
            assert!(!is_loopback_authority(no), "{no}");
        }
    }

    #[test]
    fn content_types() {
        assert!(is_json(&headers(&[("content-type", "application/json")])));
        assert!(is_json(&headers(&[(
            "content-type",
            "Application/JSON; charset=utf-8"
        )])));
        for no in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
        ] {
            assert!(!is_json(&headers(&[("content-type", no)])), "{no}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn the_audit_detail_names_the_caller_never_the_token() {
        let c = Caller {
            peer: LOCAL.parse().unwrap(),
            access: Access::Admin,
            by: OPERATOR_API,
        };
        assert_eq!(
            c.audit(json!({"rule": "r"})),
            json!({"by": "operator api", "peer": LOCAL, "token": "admin", "rule": "r"})
        );
    }
}
