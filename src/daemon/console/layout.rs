//! The console's shared page frame and small pieces every page uses: the layout (skip link,
//! header with the applied revision, navigation, sign-out, flash message, `<main id="main">`),
//! times as `<time datetime="RFC 3339">`, health and sync badges, hidden CSRF fields, and the
//! compiled-in stylesheet and script served under `/ui/assets/` with a content hash in their
//! names (so they are cached for a year and never stale).

use std::sync::LazyLock;

use maud::{DOCTYPE, Markup, html};
use sha2::{Digest, Sha256};

use crate::daemon::auth::Access;
use crate::platforms::supportopsd::events::rfc3339_ms;

/// The stylesheet, compiled in.
pub const CSS: &str = include_str!("assets/console.css");
/// The script, compiled in (optional: every page works without it).
pub const JS: &str = include_str!("assets/console.js");

/// A compiled-in asset: its name with a content hash (`console.<hash>.css`), its ETag, its
/// content type and its bytes.
#[derive(Debug)]
pub struct Asset {
    /// The file name under `/ui/assets/`.
    pub name: String,
    /// The strong ETag (`"<hash>"`).
    pub etag: String,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The bytes.
    pub body: &'static str,
}

fn asset(stem: &str, ext: &str, content_type: &'static str, body: &'static str) -> Asset {
    let hash = crate::secrets::hex(&Sha256::digest(body.as_bytes())[..6]);
    Asset {
        name: format!("{stem}.{hash}.{ext}"),
        etag: format!("\"{hash}\""),
        content_type,
        body,
    }
}

/// The stylesheet and the script.
pub static ASSETS: LazyLock<[Asset; 2]> = LazyLock::new(|| {
    [
        asset("console", "css", "text/css; charset=utf-8", CSS),
        asset("console", "js", "text/javascript; charset=utf-8", JS),
    ]
});

/// What every page's frame shows besides its content.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    /// The applied revision (full commit), if any.
    pub revision: Option<String>,
    /// The signed-in session's access, if signed in (no navigation otherwise).
    pub access: Option<Access>,
    /// The session's CSRF token (for the sign-out form).
    pub csrf: String,
    /// A message about what the last request did (`#flash`), and whether it is an error.
    pub flash: Option<(String, bool)>,
    /// The navigation entry of this page (`/ui/rules`, …).
    pub current: &'static str,
}

/// The navigation: path and label.
pub const NAV: [(&str, &str); 6] = [
    ("/ui/", "Overview"),
    ("/ui/rules", "Rules"),
    ("/ui/events", "Events"),
    ("/ui/dead-letters", "Dead letters"),
    ("/ui/audit", "Audit log"),
    ("/ui/api", "API"),
];

/// A whole page: `title` (also the `<h1>`) and `body` in the shared frame.
pub fn page(title: &str, frame: &Frame, body: Markup) -> Markup {
    let [css, js] = &*ASSETS;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="same-origin";
                title { (title) " · supportopsd" }
                link rel="stylesheet" href=(format!("/ui/assets/{}", css.name));
                script src=(format!("/ui/assets/{}", js.name)) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/" { "supportopsd" }
                    @if let Some(access) = frame.access {
                        span.revision {
                            "Revision "
                            @match &frame.revision {
                                Some(c) => code title=(c) { (short(c)) },
                                None => "none applied",
                            }
                        }
                        nav #nav aria-label="Console" {
                            ul {
                                @for (href, label) in NAV {
                                    li {
                                        @if href == frame.current {
                                            a href=(href) aria-current="page" { (label) }
                                        } @else {
                                            a href=(href) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        div.who {
                            span { (access_label(access)) }
                            form #sign-out method="post" action="/ui/logout" {
                                (csrf_field(&frame.csrf))
                                button.secondary type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main tabindex="-1" {
                    @if let Some((text, error)) = &frame.flash {
                        div #flash .flash .error[*error] role="status" { (text) }
                    }
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// How the header names who is signed in.
pub fn access_label(access: Access) -> &'static str {
    match access {
        Access::Admin => "Signed in with the admin token",
        Access::Read => "Signed in read-only",
        Access::LoopbackWithoutToken => "Signed in locally (no admin token configured)",
        Access::SyncSignature => "Signed in",
    }
}

/// The first 12 characters of a commit id.
pub fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// A time: `<time datetime="RFC 3339">` showing UTC until the script shows it in the browser's
/// time zone; "never" for 0.
pub fn time(ms: u64) -> Markup {
    if ms == 0 {
        return html! { span.muted { "never" } };
    }
    let at = rfc3339_ms(ms);
    html! { time datetime=(at) { (at.replace('T', " ").replace('Z', " UTC")) } }
}

/// A time given as RFC 3339 text (from a JSON view); the text itself when it does not look like
/// one.
pub fn time_text(at: &str) -> Markup {
    html! { time datetime=(at) { (at.replace('T', " ").replace('Z', " UTC")) } }
}

/// An age in words: `45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`.
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3_600 => format!("{} min", s / 60),
        3_600..86_400 => format!("{} h {} min", s / 3_600, s % 3_600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// `s` as one URL path segment (or query value): every byte but letters, digits and `-._~`
/// percent-encoded, so an id can never end the segment or start a query.
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The hidden field every mutating form carries.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// A badge for a health (`healthy`, `progressing`, `degraded`, `missing`, `unknown`), a sync
/// status (`in_sync`, `drifted`, `unknown`) or an outcome.
pub fn badge(status: &str) -> Markup {
    let class = match status {
        "healthy" | "in_sync" | "done" | "succeeded" | "matched" | "ok" => "ok",
        "progressing" | "drifted" | "queued" | "running" | "retrying" | "pending" | "no_match"
        | "paused" => "warn",
        "degraded" | "missing" | "dead" | "dead_lettered" | "failed" | "refused" => "bad",
        _ => "idle",
    };
    html! { span class=(format!("badge {class}")) { (status.replace('_', " ")) } }
}

/// A designed empty state.
pub fn empty(text: &str) -> Markup {
    html! { p.empty { (text) } }
}

/// A designed error state (the details are in the daemon's log, never here).
pub fn error_box(text: &str) -> Markup {
    html! { div.error-box role="alert" { (text) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_have_hashed_names_and_the_page_links_them() {
        let [css, js] = &*ASSETS;
        assert!(css.name.starts_with("console.") && css.name.ends_with(".css"));
        assert_eq!(css.name.len(), "console.".len() + 12 + ".css".len());
        assert_ne!(css.etag, js.etag);
        let html = page("T", &Frame::default(), html! {}).into_string();
        assert!(html.contains(&format!("/ui/assets/{}", css.name)));
        assert!(html.contains(&format!("/ui/assets/{}", js.name)));
        // No inline script: only the external one.
        assert_eq!(html.matches("<script").count(), 1);
        assert!(html.contains("<script src=\"/ui/assets/"));
        assert!(html.contains("<main id=\"main\"") && html.contains("<h1>T</h1>"));
        // Signed out: no navigation, no sign-out form.
        assert!(!html.contains("id=\"nav\"") && !html.contains("sign-out"));
    }

    #[test]
    fn the_frame_escapes_and_marks_the_current_page() {
        let frame = Frame {
            revision: Some("<b>abcdef0123456789".into()),
            access: Some(Access::Read),
            csrf: "tok\"en".into(),
            flash: Some(("done <i>".into(), false)),
            current: "/ui/rules",
        };
        let html = page("A <title>", &frame, html! {}).into_string();
        assert!(!html.contains("<b>") && !html.contains("<i>") && !html.contains("A <title>"));
        assert!(html.contains("<a href=\"/ui/rules\" aria-current=\"page\">Rules</a>"));
        assert!(html.contains("id=\"flash\""));
        assert!(html.contains("value=\"tok&quot;en\""));
        for (href, _) in NAV {
            assert!(html.contains(&format!("href=\"{href}\"")), "{href}");
        }
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("zendesk-main_1.x~"), "zendesk-main_1.x~");
        assert_eq!(seg("a/b?c#d e\"<"), "a%2Fb%3Fc%23d%20e%22%3C");
        assert_eq!(seg("é"), "%C3%A9");
    }

    #[test]
    fn times_and_ages() {
        let t = time(1_765_000_000_000).into_string();
        assert!(t.starts_with("<time datetime=\"2025-12-06T05:46:40"), "{t}");
        assert!(time(0).into_string().contains("never"));
        assert_eq!(age(5_000), "5 s");
        assert_eq!(age(125_000), "2 min");
        assert_eq!(age(3_600_000 + 300_000), "1 h 5 min");
        assert_eq!(age(2 * 86_400_000 + 4 * 3_600_000), "2 d 4 h");
    }
}
