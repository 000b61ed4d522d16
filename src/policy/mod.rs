//! The host policy: what only the operator of the machine decides, never the manifest
//! repository. The repository proposes; the host decides.
//!
//! A TOML file outside the repository (`--policy FILE`, else `$CREDENTIALS_DIRECTORY/policy.toml`,
//! else `/etc/supportopsd/policy.toml`; see [`Policy::locate`]) holds:
//!
//! ```toml
//! [endpoints]
//! # Hosts any integration's `[endpoint] base_url` (or a Freshdesk custom `domain`) may name.
//! allow = ["127.0.0.1:18080", "support.example.com", "*.proxy.example.com:8443"]
//! # Hosts only integrations of one platform may name.
//! freshdesk = ["helpdesk.example.com"]
//!
//! [secrets]
//! # Which `{ env = … }` and `{ file = … }` references the integrations whose id matches the
//! # key may name (`*` matches any run of characters). Sealed values are bound to their
//! # integration and field already and are always allowed.
//! "freshdesk-*" = { env = ["FRESHDESK_*"], file = ["freshdesk-*"] }
//! ```
//!
//! Guarantees:
//!
//! - Each platform's connector sends credentials only to the platform's own hosts
//!   ([`crate::platforms::Descriptor::hosts`], over https on the default port) unless the
//!   policy lists the host an override names; without a policy no override to another host is
//!   honoured. A host pattern is `host`, `host:port`, `host:*` (any port), `*.domain` (any
//!   name below `domain`, which needs two labels or more) or an IP literal (`[::1]:8080`);
//!   without a port it matches the scheme's default port only. Host names compare
//!   case-insensitively, after the same normalisation the HTTP client applies
//!   (`reqwest::Url`), so `0x7f.1` is `127.0.0.1` on both sides.
//! - `http://` is accepted only for a loopback host (`127.0.0.0/8`, `::1`, `localhost`), and a
//!   URL carrying a user name or password never; [`Endpoint::parse`] says so offline, which is
//!   what `validate` and `plan` check without the policy.
//! - With a `[secrets]` table, an integration may name only the `env` and `file` references
//!   an entry matching its id allows (all matching entries together); an integration no entry
//!   matches may name none. Without one, any reference is allowed but the daemon's own secrets,
//!   which [`crate::secrets::SecretRef::check_reserved`] refuses always.
//! - Every refusal names the policy key an operator sets to allow what was refused, or says
//!   that no policy can allow it.
//! - A policy file that cannot be read or parsed is an error, never "no policy".

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::manifest::id::IntegrationId;
use crate::platforms::PlatformKind;
use crate::secrets::{CREDENTIALS_DIRECTORY_ENV, SecretRef};

/// The policy's file name inside `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`).
pub const CREDENTIAL_POLICY_NAME: &str = "policy.toml";

/// Where the policy is read when neither `--policy` nor the credentials directory gives one.
pub const SYSTEM_POLICY_PATH: &str = "/etc/supportopsd/policy.toml";

/// The largest policy file read, in bytes.
const MAX_POLICY_LEN: u64 = 1024 * 1024;

/// Why a policy could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read the host policy {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid policy.
    #[error("invalid host policy {}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong (TOML errors carry their line and column).
        message: String,
    },
}

/// The host policy in force. [`Policy::none`] when no file was found.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Where it was read; `None` for no policy.
    source: Option<PathBuf>,
    /// `[endpoints] allow`: hosts any integration may name.
    allow: Vec<HostPattern>,
    /// `[endpoints] <platform>`: hosts the integrations of one platform may name.
    per_platform: Vec<(PlatformKind, Vec<HostPattern>)>,
    /// `[secrets]`, by key; `None` without the table.
    secrets: Option<Vec<SecretScope>>,
}

/// One `[secrets]` entry.
#[derive(Debug, Clone)]
struct SecretScope {
    /// The key as written: an integration id pattern.
    ids: String,
    env: Vec<String>,
    file: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    endpoints: std::collections::BTreeMap<String, Vec<String>>,
    secrets: Option<std::collections::BTreeMap<String, RawScope>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScope {
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    file: Vec<String>,
}

impl Policy {
    /// No policy: no endpoint override to a host outside the platform's own is honoured, and
    /// references are not scoped (the daemon's own secrets stay refused).
    pub fn none() -> Policy {
        Policy::default()
    }

    /// Finds and reads the policy: `explicit` (`--policy`), else
    /// `$CREDENTIALS_DIRECTORY/policy.toml` (as `env` sees it) if that file exists, else
    /// `system` (`/etc/supportopsd/policy.toml`) if it exists, else [`Policy::none`]. A file
    /// named explicitly must exist; any file found must parse.
    pub fn locate(
        explicit: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        system: &Path,
    ) -> Result<Policy, Error> {
        if let Some(path) = explicit {
            return Policy::read(path);
        }
        let mut candidates = Vec::new();
        if let Some(dir) = env(CREDENTIALS_DIRECTORY_ENV).filter(|d| !d.is_empty()) {
            candidates.push(Path::new(&dir).join(CREDENTIAL_POLICY_NAME));
        }
        candidates.push(system.to_owned());
        for path in candidates {
            match std::fs::metadata(&path) {
                Ok(_) => return Policy::read(&path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(Error::Read { path, source }),
            }
        }
        Ok(Policy::none())
    }

    /// Reads and parses one policy file.
    pub fn read(path: &Path) -> Result<Policy, Error> {
        use std::io::Read as _;
        let read_err = |source| Error::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let mut text = String::new();
        file.take(MAX_POLICY_LEN + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        if text.len() as u64 > MAX_POLICY_LEN {
            return Err(Error::Invalid {
                path: path.to_owned(),
                message: "larger than 1 MiB".to_owned(),
            });
        }
        Policy::parse(&text, path)
    }

    /// Parses a policy's text; `path` is where it came from (named in errors and refusals).
    pub fn parse(text: &str, path: &Path) -> Result<Policy, Error> {
        let invalid = |message: String| Error::Invalid {
            path: path.to_owned(),
            message,
        };
        let raw: RawPolicy = toml::from_str(text).map_err(|e| invalid(one_line(&e.to_string())))?;
        let mut policy = Policy {
            source: Some(path.to_owned()),
            ..Policy::default()
        };
        for (key, patterns) in &raw.endpoints {
            let parsed = patterns
                .iter()
                .map(|p| {
                    HostPattern::parse(p)
                        .map_err(|why| invalid(format!("[endpoints] {key}: {why}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if key == "allow" {
                policy.allow = parsed;
                continue;
            }
            match PlatformKind::parse(key).filter(|k| !k.is_builtin()) {
                Some(kind) => policy.per_platform.push((kind, parsed)),
                None => {
                    let names: Vec<&str> = PlatformKind::ALL
                        .iter()
                        .filter(|k| !k.is_builtin())
                        .map(|k| k.as_str())
                        .collect();
                    return Err(invalid(format!(
                        "unknown key `{key}` in [endpoints]: use `allow` (any platform) or a platform name ({})",
                        names.join(", ")
                    )));
                }
            }
        }
        if let Some(secrets) = raw.secrets {
            let mut scopes = Vec::new();
            for (ids, scope) in secrets {
                let at = |what: &str| format!("[secrets] \"{ids}\": {what}");
                if ids.is_empty()
                    || !ids.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '*'
                    })
                {
                    return Err(invalid(at(
                        "the key is an integration id pattern: lower-case letters, digits, `-` and `*`",
                    )));
                }
                for (kind, patterns) in [("env", &scope.env), ("file", &scope.file)] {
                    for p in patterns {
                        check_name_pattern(kind, p)
                            .map_err(|why| invalid(at(&format!("{kind} pattern {p:?}: {why}"))))?;
                    }
                }
                scopes.push(SecretScope {
                    ids,
                    env: scope.env,
                    file: scope.file,
                });
            }
            policy.secrets = Some(scopes);
        }
        Ok(policy)
    }

    /// Where the policy was read, or `None` for no policy.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// One line for logs: `host policy /etc/supportopsd/policy.toml` or `no host policy`.
    pub fn describe(&self) -> String {
        match &self.source {
            Some(p) => format!("host policy {}", p.display()),
            None => "no host policy".to_owned(),
        }
    }

    /// Checks an endpoint an integration of `platform` names instead of its platform's
    /// default: `what` says where (`[endpoint] base_url`, `credential \`domain\``), `own` is
    /// the platform's own hosts ([`crate::platforms::Descriptor::hosts`]). Allowed: https to
    /// one of `own` on the default port, or a host the policy lists (for any platform, or for
    /// this one).
    pub fn check_endpoint(
        &self,
        platform: PlatformKind,
        own: &[&str],
        what: &str,
        url: &str,
    ) -> Result<(), Refusal> {
        let endpoint = Endpoint::parse(url).map_err(|e| Refusal {
            message: format!("{what}: {e}"),
        })?;
        if endpoint.scheme == Scheme::Https
            && own
                .iter()
                .filter_map(|p| HostPattern::parse(p).ok())
                .any(|p| p.matches(&endpoint))
        {
            return Ok(());
        }
        let platform_patterns = self
            .per_platform
            .iter()
            .filter(|(k, _)| *k == platform)
            .flat_map(|(_, p)| p);
        if self
            .allow
            .iter()
            .chain(platform_patterns)
            .any(|p| p.matches(&endpoint))
        {
            return Ok(());
        }
        let host = endpoint.authority();
        let kind = if endpoint.is_internal_ip() {
            " (an internal address)"
        } else {
            ""
        };
        let message = match &self.source {
            Some(path) => format!(
                "{what}: host {host}{kind} is not in the host policy; an operator who trusts it adds \"{host}\" to `[endpoints] allow` (any platform) or `[endpoints] {platform}` in {}",
                path.display()
            ),
            None => format!(
                "{what}: host {host}{kind} is not one of {platform}'s own hosts and no host policy is loaded; an operator who trusts it writes `[endpoints] allow = [\"{host}\"]` to {SYSTEM_POLICY_PATH} (or $CREDENTIALS_DIRECTORY/{CREDENTIAL_POLICY_NAME}, or --policy FILE) and restarts the daemon"
            ),
        };
        Err(Refusal { message })
    }

    /// Checks that integration `id` may name the secret reference `r` (in `field`): never one
    /// of the daemon's own secrets; with a `[secrets]` table, only what an entry matching `id`
    /// allows. Sealed values are always allowed (they only open for their integration and
    /// field).
    pub fn check_reference(
        &self,
        id: &IntegrationId,
        field: &str,
        r: &SecretRef,
    ) -> Result<(), Refusal> {
        r.check_reserved().map_err(|e| Refusal {
            message: format!("`{field}`: {e}"),
        })?;
        let (kind, name) = match r {
            SecretRef::Env(v) => ("env", v),
            SecretRef::File(f) => ("file", f),
            SecretRef::Sealed(_) => return Ok(()),
        };
        let Some(scopes) = &self.secrets else {
            return Ok(());
        };
        let path = self
            .source
            .as_deref()
            .map_or_else(String::new, |p| p.display().to_string());
        let matching: Vec<&SecretScope> = scopes
            .iter()
            .filter(|s| glob(&s.ids, id.as_str()))
            .collect();
        if matching.is_empty() {
            return Err(Refusal {
                message: format!(
                    "`{field}` ({}): no `[secrets]` entry of the host policy {path} matches integration `{id}`, so it may name no env or file reference; an operator adds `\"{id}\" = {{ {kind} = [\"{name}\"] }}` under `[secrets]` (or uses a sealed value)",
                    r.describe()
                ),
            });
        }
        let allowed = matching.iter().any(|s| {
            let patterns = if kind == "env" { &s.env } else { &s.file };
            patterns.iter().any(|p| glob(p, name))
        });
        if allowed {
            return Ok(());
        }
        let keys: Vec<String> = matching.iter().map(|s| format!("\"{}\"", s.ids)).collect();
        Err(Refusal {
            message: format!(
                "`{field}` ({}): the host policy {path} does not let integration `{id}` name it; an operator who means it adds \"{name}\" to `{kind}` of `[secrets] {}`",
                r.describe(),
                keys.join(" or ")
            ),
        })
    }
}

/// Why the policy refused something: one sentence naming what was refused and the policy key
/// that would allow it (or why none can). Never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    message: String,
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain text: loopback only.
    Http,
    /// TLS.
    Https,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// Where a URL sends its requests, as the HTTP client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The scheme.
    pub scheme: Scheme,
    /// The host, normalised: lower case, IPv4 in dotted decimal, IPv6 in brackets.
    pub host: String,
    /// Whether `host` is an IP literal.
    pub ip: bool,
    /// The port (the scheme's default when the URL names none).
    pub port: u16,
    /// Whether the host is loopback (`127.0.0.0/8`, `::1`, `localhost`).
    pub loopback: bool,
}

impl Endpoint {
    /// Parses a base URL the way the HTTP client does (`reqwest::Url`) and checks what can be
    /// checked without the policy: `http` or `https` only, no user name or password, `http://`
    /// only for a loopback host.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let parsed = reqwest::Url::parse(url.trim())
            .map_err(|e| format!("`{}` is not a URL ({e})", url.trim()))?;
        let scheme = match parsed.scheme() {
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            other => return Err(format!("scheme `{other}` is not supported: use https://")),
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(
                "a URL must not carry a user name or password (credentials come from [credentials])"
                    .to_owned(),
            );
        }
        let raw_host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("`{}` names no host", url.trim()))?;
        // The client's parser has already normalised the host: IPv4 in dotted decimal (so
        // `0x7f.1` is `127.0.0.1`), IPv6 in brackets, names in lower-case ASCII.
        let (host, ip, loopback) = if let Some(v6) =
            raw_host.strip_prefix('[').and_then(|h| h.strip_suffix(']'))
        {
            let a: std::net::Ipv6Addr = v6
                .parse()
                .map_err(|_| format!("`{raw_host}` is not an IPv6 address"))?;
            let loopback = a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback());
            (format!("[{a}]"), true, loopback)
        } else if let Ok(a) = raw_host.parse::<std::net::Ipv4Addr>() {
            (a.to_string(), true, a.is_loopback())
        } else {
            let d = raw_host.to_ascii_lowercase();
            let loopback = d == "localhost";
            (d, false, loopback)
        };
        let port = parsed.port().unwrap_or(scheme.default_port());
        if scheme == Scheme::Http && !loopback {
            return Err(format!(
                "plain http:// is allowed only for a loopback host, not {host}: use https://"
            ));
        }
        Ok(Endpoint {
            scheme,
            host,
            ip,
            port,
            loopback,
        })
    }

    /// `host` or `host:port` (the port when it is not the scheme's default).
    pub fn authority(&self) -> String {
        if self.port == self.scheme.default_port() {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Whether the host is an IP literal in a private, link-local, loopback or unspecified
    /// range (what an override must never reach unless the policy names it).
    pub fn is_internal_ip(&self) -> bool {
        let Ok(ip) = self.host.trim_matches(['[', ']']).parse::<IpAddr>() else {
            return false;
        };
        match ip {
            IpAddr::V4(a) => {
                a.is_private() || a.is_loopback() || a.is_link_local() || a.is_unspecified()
            }
            IpAddr::V6(a) => {
                a.is_loopback()
                    || a.is_unspecified()
                    || (a.segments()[0] & 0xfe00) == 0xfc00
                    || (a.segments()[0] & 0xffc0) == 0xfe80
            }
        }
    }
}

/// One entry of `[endpoints]`: a host (or every name below a domain) and a port rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPattern {
    host: HostMatch,
    port: PortRule,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    /// Exactly this host (normalised like [`Endpoint::host`]).
    Exact(String),
    /// `*.domain`: any name below `domain`, not `domain` itself, never an IP literal.
    Below(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortRule {
    /// No port given: the scheme's default port only.
    Default,
    /// `:*`.
    Any,
    /// `:8080`.
    Exact(u16),
}

impl HostPattern {
    fn parse(text: &str) -> Result<HostPattern, String> {
        let t = text.trim();
        let shape = || {
            format!(
                "{text:?} is not a host pattern: give `host`, `host:port`, `host:*` or `*.domain`, without a scheme or path"
            )
        };
        if t.is_empty()
            || t.contains("://")
            || t.contains(['/', '@', '?', '#', '\\'])
            || t.contains(char::is_whitespace)
        {
            return Err(shape());
        }
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let (inside, after) = rest.split_once(']').ok_or_else(shape)?;
            (format!("[{inside}]"), after)
        } else {
            match t.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => {
                    return Err(format!(
                        "{text:?}: an IPv6 address goes in brackets, e.g. `[::1]:8080`"
                    ));
                }
                Some((h, _)) => (h.to_owned(), &t[h.len()..]),
                None => (t.to_owned(), ""),
            }
        };
        let port = match port {
            "" => PortRule::Default,
            ":*" => PortRule::Any,
            p => p
                .strip_prefix(':')
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|p| *p != 0)
                .map(PortRule::Exact)
                .ok_or_else(|| format!("{text:?}: the port is a number from 1 to 65535, or `*`"))?,
        };
        let host = if let Some(suffix) = host.strip_prefix("*.") {
            let domain = canonical_host(suffix).map_err(|_| shape())?;
            let labels: Vec<&str> = domain.split('.').collect();
            let numeric = labels
                .last()
                .is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()));
            if suffix.contains('*') || domain.starts_with('[') || numeric || labels.len() < 2 {
                return Err(format!(
                    "{text:?} is too broad: a wildcard stands for the first labels of a domain of two labels or more (`*.example.com`)"
                ));
            }
            HostMatch::Below(domain)
        } else if host == "*" || host.contains('*') {
            return Err(format!(
                "{text:?}: `*` stands only for the first labels of a domain (`*.example.com`) or for the port (`host:*`)"
            ));
        } else {
            HostMatch::Exact(canonical_host(&host).map_err(|_| shape())?)
        };
        Ok(HostPattern { host, port })
    }

    fn matches(&self, e: &Endpoint) -> bool {
        let port = match self.port {
            PortRule::Default => e.port == e.scheme.default_port(),
            PortRule::Any => true,
            PortRule::Exact(p) => e.port == p,
        };
        port && match &self.host {
            HostMatch::Exact(h) => *h == e.host,
            HostMatch::Below(domain) => {
                !e.ip
                    && e.host.len() > domain.len() + 1
                    && e.host.ends_with(domain.as_str())
                    && e.host.as_bytes()[e.host.len() - domain.len() - 1] == b'.'
            }
        }
    }
}

/// A host as [`Endpoint::parse`] normalises it.
fn canonical_host(host: &str) -> Result<String, String> {
    Endpoint::parse(&format!("https://{host}/")).map(|e| e.host)
}

/// Checks an `env` or `file` pattern of `[secrets]`.
fn check_name_pattern(kind: &str, p: &str) -> Result<(), &'static str> {
    if p.is_empty() || p.contains(['\0', '=']) {
        return Err("not a name");
    }
    if kind == "file" && (p.contains(['/', '\\']) || p.contains("..")) {
        return Err(
            "a file pattern names files inside $CREDENTIALS_DIRECTORY: no `/`, `\\` or `..`",
        );
    }
    let literal = if kind == "env" {
        SecretRef::Env(p.to_owned())
    } else {
        SecretRef::File(p.to_owned())
    };
    if !p.contains('*') && literal.check_reserved().is_err() {
        return Err("names one of the daemon's own secrets, which no integration may use");
    }
    Ok(())
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (none included)
/// and everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// A multi-line parser message (TOML's, with its snippet) as one line: the first line and
/// the last.
fn one_line(message: &str) -> String {
    let mut lines = message.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default().to_owned();
    match lines.next_back() {
        Some(last) if !last.starts_with('|') => format!("{first}: {last}"),
        _ => first,
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

#[cfg(test)]
mod tests;
