//! The console's sign-in sessions: server-side, in memory, bounded. A session is created by a
//! successful sign-in (the admin or the read-only token, or no token in the tokenless loopback
//! mode) and is named by a random 256-bit id from the OS RNG, which the browser holds in the
//! `supportopsd_session` cookie ([`cookie`]); the session holds what the sign-in proved (an
//! [`Access`]) and a per-session random CSRF token that every mutating form carries.
//!
//! Guarantees:
//!
//! - A session ends after [`IDLE_MS`] without a request and [`ABSOLUTE_MS`] after sign-in,
//!   whichever comes first, and on sign-out. At most [`MAX_SESSIONS`] live at once: a sign-in
//!   beyond that ends the least recently used session.
//! - Sessions live in this process only: a daemon restart signs everyone out.
//! - Ids and CSRF tokens are compared in constant time ([`constant_time_eq`]); the store is
//!   keyed by the SHA-256 of the id, so a lookup's timing says nothing about a stored id.
//! - Failed sign-ins are limited per peer address ([`Attempts`]): at most [`MAX_FAILURES`] in
//!   [`FAILURE_WINDOW_MS`], then refused until the window has passed.
//! - Nothing here logs or prints an id or a token ([`Session`]'s `Debug` hides them).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use sha2::{Digest, Sha256};

use crate::daemon::auth::Access;
use crate::secrets::constant_time_eq;

/// The cookie's name.
pub const COOKIE: &str = "supportopsd_session";
/// A session ends after this long without a request: 1 hour.
pub const IDLE_MS: u64 = 3_600_000;
/// A session ends this long after sign-in, used or not: 12 hours.
pub const ABSOLUTE_MS: u64 = 12 * 3_600_000;
/// Sessions alive at once, at most.
pub const MAX_SESSIONS: usize = 1_000;
/// Failed sign-ins per peer address within [`FAILURE_WINDOW_MS`], at most.
pub const MAX_FAILURES: u32 = 5;
/// The window of [`MAX_FAILURES`]: 5 minutes.
pub const FAILURE_WINDOW_MS: u64 = 5 * 60_000;
/// Peer addresses whose failures are remembered, at most (the oldest are forgotten first).
const MAX_PEERS: usize = 10_000;

/// 32 random bytes from the OS RNG, as 64 hex digits.
pub fn random_token() -> Result<String, getrandom::Error> {
    crate::secrets::random_hex(32)
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// One signed-in browser.
#[derive(Clone)]
pub struct Session {
    /// What the sign-in proved.
    pub access: Access,
    /// The token every mutating form of this session carries (hidden field `csrf`).
    pub csrf: String,
    /// When it was created, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When it was last used.
    pub seen_ms: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("access", &self.access)
            .field("csrf", &"(hidden)")
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Whether `given` is this session's CSRF token (constant time).
    pub fn csrf_ok(&self, given: &str) -> bool {
        !given.is_empty() && constant_time_eq(given.as_bytes(), self.csrf.as_bytes())
    }

    /// Whether this session may change anything (read-only sessions may not).
    pub fn may_change(&self) -> bool {
        self.access.may_change()
    }

    fn alive(&self, now: u64) -> bool {
        now.saturating_sub(self.seen_ms) < IDLE_MS
            && now.saturating_sub(self.created_ms) < ABSOLUTE_MS
    }
}

/// The sessions of this process.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<[u8; 32], Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

impl Sessions {
    /// A new session for `access`: its id (for the cookie) and the session. Ends expired
    /// sessions, and the least recently used one when [`MAX_SESSIONS`] are alive.
    pub fn create(&self, access: Access, now: u64) -> Result<(String, Session), getrandom::Error> {
        let id = random_token()?;
        let session = Session {
            access,
            csrf: random_token()?,
            created_ms: now,
            seen_ms: now,
        };
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|_, s| s.alive(now));
        while live.len() >= MAX_SESSIONS {
            let Some(oldest) = live.iter().min_by_key(|(_, s)| s.seen_ms).map(|(k, _)| *k) else {
                break;
            };
            live.remove(&oldest);
        }
        live.insert(digest(&id), session.clone());
        Ok((id, session))
    }

    /// The live session named `id`, marked used at `now`; `None` (and it is ended) when it has
    /// expired.
    pub fn get(&self, id: &str, now: u64) -> Option<Session> {
        let key = digest(id);
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let session = live.get_mut(&key)?;
        if !session.alive(now) {
            live.remove(&key);
            return None;
        }
        session.seen_ms = now;
        Some(session.clone())
    }

    /// Ends the session named `id` (sign-out); whether there was one.
    pub fn end(&self, id: &str) -> bool {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&digest(id))
            .is_some()
    }

    /// Sessions alive now.
    pub fn count(&self, now: u64) -> usize {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|_, s| s.alive(now));
        live.len()
    }
}

/// Failed sign-ins per peer address.
#[derive(Debug, Default)]
pub struct Attempts {
    failures: Mutex<HashMap<IpAddr, (u64, u32)>>,
}

impl Attempts {
    /// Whether `peer` may try to sign in now (fewer than [`MAX_FAILURES`] failures in the
    /// window).
    pub fn allowed(&self, peer: IpAddr, now: u64) -> bool {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        match failures.get(&peer) {
            Some((since, n)) => {
                now.saturating_sub(*since) >= FAILURE_WINDOW_MS || *n < MAX_FAILURES
            }
            None => true,
        }
    }

    /// Counts a failed sign-in of `peer`.
    pub fn failed(&self, peer: IpAddr, now: u64) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= MAX_PEERS {
            failures.retain(|_, (since, _)| now.saturating_sub(*since) < FAILURE_WINDOW_MS);
            if failures.len() >= MAX_PEERS
                && let Some(oldest) = failures
                    .iter()
                    .min_by_key(|(_, (s, _))| *s)
                    .map(|(k, _)| *k)
            {
                failures.remove(&oldest);
            }
        }
        let slot = failures.entry(peer).or_insert((now, 0));
        if now.saturating_sub(slot.0) >= FAILURE_WINDOW_MS {
            *slot = (now, 0);
        }
        slot.1 = slot.1.saturating_add(1);
    }

    /// Forgets `peer`'s failures (after it signed in).
    pub fn succeeded(&self, peer: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&peer);
    }
}

/// The `Set-Cookie` value that hands `id` to the browser: `HttpOnly; SameSite=Strict;
/// Path=/ui`, `Secure` when the daemon's public URL is https, and a `Max-Age` of the absolute
/// lifetime.
pub fn cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/ui; Max-Age={}{}",
        ABSOLUTE_MS / 1000,
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the cookie (sign-out).
pub fn cleared_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The session id in a request's `Cookie` headers, if any.
pub fn from_cookies(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_or_old_and_end_on_sign_out() {
        let s = Sessions::default();
        let (id, session) = s.create(Access::Read, 1_000).unwrap();
        assert_eq!(id.len(), 64);
        assert_ne!(id, session.csrf);
        assert_eq!(s.get(&id, 2_000).unwrap().access, Access::Read);
        assert!(s.get("not-a-session", 2_000).is_none());
        // Idle: used just before the idle limit keeps it; beyond it ends it.
        assert!(s.get(&id, 2_000 + IDLE_MS - 1).is_some());
        assert!(s.get(&id, 2_000 + 2 * IDLE_MS).is_none());
        assert!(s.get(&id, 2_000).is_none(), "ended for good");
        // Absolute: used every half hour, it still ends after ABSOLUTE_MS.
        let (id, _) = s.create(Access::Admin, 0).unwrap();
        let mut t = 0;
        while t + IDLE_MS / 2 < ABSOLUTE_MS {
            t += IDLE_MS / 2;
            assert!(s.get(&id, t).is_some(), "{t}");
        }
        assert!(s.get(&id, ABSOLUTE_MS).is_none());
        let (id, _) = s.create(Access::Admin, 0).unwrap();
        assert!(s.end(&id));
        assert!(!s.end(&id));
        assert!(s.get(&id, 1).is_none());
    }

    #[test]
    fn sessions_are_bounded_and_the_least_recently_used_goes_first() {
        let s = Sessions::default();
        let (first, _) = s.create(Access::Admin, 0).unwrap();
        let mut others = Vec::new();
        for i in 1..MAX_SESSIONS as u64 {
            others.push(s.create(Access::Read, i).unwrap().0);
        }
        // The first one is used again: the second is now the least recently used.
        assert!(s.get(&first, 5_000).is_some());
        s.create(Access::Read, 5_001).unwrap();
        assert_eq!(s.count(5_002), MAX_SESSIONS);
        assert!(s.get(&first, 5_003).is_some());
        assert!(s.get(&others[0], 5_003).is_none());
        assert!(s.get(&others[1], 5_003).is_some());
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        let s = Sessions::default();
        let (_, session) = s.create(Access::Admin, 0).unwrap();
        assert!(session.csrf_ok(&session.csrf.clone()));
        assert!(!session.csrf_ok(""));
        assert!(!session.csrf_ok(&session.csrf[..63]));
        assert!(!session.csrf_ok(&format!("{}0", session.csrf)));
        let (_, other) = s.create(Access::Admin, 0).unwrap();
        assert!(!session.csrf_ok(&other.csrf));
        assert!(!format!("{session:?}").contains(&session.csrf));
    }

    #[test]
    fn failed_sign_ins_are_limited_per_peer_for_a_window() {
        let a = Attempts::default();
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert!(a.allowed(peer, 10));
            a.failed(peer, 10);
        }
        assert!(!a.allowed(peer, 11));
        assert!(a.allowed(other, 11));
        assert!(a.allowed(peer, 10 + FAILURE_WINDOW_MS));
        a.failed(peer, 10 + FAILURE_WINDOW_MS);
        assert!(a.allowed(peer, 11 + FAILURE_WINDOW_MS), "a new window");
        a.succeeded(peer);
        assert!(a.allowed(peer, 12 + FAILURE_WINDOW_MS));
    }

    #[test]
    fn cookie_attributes() {
        let c = cookie("abc", false);
        assert!(c.starts_with("supportopsd_session=abc; "));
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
            assert!(c.contains(attr), "{c}");
        }
        assert!(!c.contains("Secure"));
        assert!(cookie("abc", true).ends_with("; Secure"));
        assert!(cleared_cookie(true).contains("Max-Age=0"));
        let mut h = http::HeaderMap::new();
        h.append(
            http::header::COOKIE,
            "a=1; supportopsd_session=xyz ; b=2".parse().unwrap(),
        );
        assert_eq!(from_cookies(&h).as_deref(), Some("xyz"));
        let mut h = http::HeaderMap::new();
        h.append(
            http::header::COOKIE,
            "supportopsd_session=".parse().unwrap(),
        );
        assert_eq!(from_cookies(&h), None);
    }
}
