//! A remote manifest repository: cloned (bare) into the state directory and fetched before
//! every pass that looks for a new commit (`--poll-interval`, SIGHUP, `POST /api/sync`).
//!
//! Fetching runs the system's `git` (its HTTPS and SSH support, its own credential helpers and
//! known hosts), so that the daemon does not carry a second TLS stack for git. Credentials for
//! HTTPS come from a secret reference and reach git through its environment as an
//! `http.extraHeader` (never in the URL or the command line, so never in `ps`, logs or errors).
//! `GIT_TERMINAL_PROMPT=0`: git never waits for a password.
//!
//! Hardening (SEC-17):
//!
//! - git runs with a cleared environment: only `PATH`, `HOME`, what SSH and TLS need to find
//!   the operator's agent, keys and CA ([`PASSED_THROUGH`]), and the variables set here. It
//!   never sees the daemon's other variables (platform credentials, tokens).
//! - Only the followed branch is cloned (`--single-branch --branch`) and fetched.
//! - The URL's userinfo (`https://user:token@host/…`) is redacted in every message
//!   ([`redact_url`]), git's own error line included.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use base64::Engine as _;
use regex::Regex;

use crate::secrets::Secret;

/// The variables of the daemon's environment that git gets (when set), besides `PATH` and
/// `HOME`: how SSH finds the agent and how TLS and SSH are configured by the operator.
pub const PASSED_THROUGH: &[&str] = &[
    "SSH_AUTH_SOCK",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "XDG_CONFIG_HOME",
];

/// `PATH` for git when the daemon has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A URL's scheme and userinfo: `scheme://userinfo@`.
static USERINFO: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"([A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s'\x22]*@").ok());

/// `text` with the userinfo of every `scheme://user:password@host` URL in it replaced by `***`
/// (scp-like `git@host:path` names no secret and is kept).
pub fn redact_url(text: &str) -> String {
    match USERINFO.as_ref() {
        Some(re) => re.replace_all(text, "${1}***@").into_owned(),
        // The pattern is a constant and compiles; were it not to, say nothing of the URL.
        None => "(a URL)".to_owned(),
    }
}

/// How long one clone or fetch may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// A remote repository to follow.
#[derive(Debug, Clone)]
pub struct Remote {
    /// Where to fetch from (`https://…`, `ssh://…`, `git@host:path`, `file://…`).
    pub url: String,
    /// The branch to follow.
    pub branch: String,
    /// The bare clone (under the state directory).
    pub dir: PathBuf,
    /// `user:token` for HTTPS basic authentication, if the remote needs it.
    pub credentials: Option<Secret>,
}

impl Remote {
    /// The revision the daemon runs: the branch in the clone.
    pub fn rev(&self) -> String {
        format!("refs/heads/{}", self.branch)
    }

    /// Clones the remote if the clone does not exist yet, else fetches the branch.
    pub async fn sync(&self) -> Result<(), String> {
        if self.url.starts_with('-') || self.branch.starts_with('-') || self.branch.contains("..") {
            return Err("the remote URL and branch must not start with `-`".to_owned());
        }
        self.git(&self.sync_args()).await
    }

    /// The arguments of the next `git` run: a fetch of the followed branch only when the clone
    /// exists, else a clone of that branch only.
    fn sync_args(&self) -> Vec<String> {
        let dir = self.dir.to_string_lossy().into_owned();
        if self.dir.join("HEAD").is_file() {
            let refspec = format!("+refs/heads/{0}:refs/heads/{0}", self.branch);
            [
                "-C", &dir, "fetch", "--quiet", "--prune", "origin", &refspec,
            ]
            .map(str::to_owned)
            .to_vec()
        } else {
            [
                "clone",
                "--quiet",
                "--bare",
                "--single-branch",
                "--branch",
                &self.branch,
                "--",
                &self.url,
                &dir,
            ]
            .map(str::to_owned)
            .to_vec()
        }
    }

    /// `program` (git) with `args`, the environment cleared but for what git needs (read from
    /// `parent`, the daemon's environment) and the credentials.
    fn command(
        &self,
        program: &str,
        args: &[String],
        parent: &dyn Fn(&str) -> Option<OsString>,
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env_clear()
            .env(
                "PATH",
                parent("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
            )
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for name in std::iter::once("HOME").chain(PASSED_THROUGH.iter().copied()) {
            if let Some(value) = parent(name) {
                cmd.env(name, value);
            }
        }
        if let Some(c) = &self.credentials {
            let basic = base64::engine::general_purpose::STANDARD.encode(c.expose());
            cmd.env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env(
                    "GIT_CONFIG_VALUE_0",
                    format!("Authorization: Basic {basic}"),
                );
        }
        cmd
    }

    async fn git(&self, args: &[String]) -> Result<(), String> {
        let what = if args.iter().any(|a| a == "clone") {
            "clone"
        } else {
            "fetch"
        };
        let child = self
            .command("git", args, &|name| std::env::var_os(name))
            .spawn()
            .map_err(|e| format!("cannot run git (is it installed?): {e}"))?;
        let out = tokio::time::timeout(GIT_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| format!("git {what} took longer than {GIT_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        Err(format!(
            "git {what} from {} failed: {}",
            redact_url(&self.url),
            redact_url(&crate::platforms::http::excerpt(first))
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn remote(url: &str, dir: PathBuf) -> Remote {
        Remote {
            url: url.to_owned(),
            branch: "main".to_owned(),
            dir,
            credentials: None,
        }
    }

    #[test]
    fn userinfo_is_redacted_from_urls_and_messages() {
        for (text, redacted) in [
            (
                "https://ops:ghp_SECRET@github.com/acme/rules.git",
                "https://***@github.com/acme/rules.git",
            ),
            (
                "https://ghp_SECRET@github.com/acme/rules.git",
                "https://***@github.com/acme/rules.git",
            ),
            (
                "fatal: unable to access 'https://u:p%40ss@git.example/r/': 403",
                "fatal: unable to access 'https://***@git.example/r/': 403",
            ),
            (
                "ssh://git:tok@host:2222/x and http://a:b@c/d",
                "ssh://***@host:2222/x and http://***@c/d",
            ),
            // Nothing secret to hide.
            (
                "https://github.com/acme/rules.git",
                "https://github.com/acme/rules.git",
            ),
            (
                "git@github.com:acme/rules.git",
                "git@github.com:acme/rules.git",
            ),
            ("file:///srv/rules", "file:///srv/rules"),
            ("mail me at ops@example.com", "mail me at ops@example.com"),
        ] {
            assert_eq!(redact_url(text), redacted, "{text}");
        }
    }

    #[tokio::test]
    async fn a_failing_clone_names_the_url_without_its_userinfo() {
        let state = tempfile::tempdir().unwrap();
        let r = remote(
            "file://ops:SECRET-TOKEN@localhost/nonexistent/supportopsd-test-repo",
            state.path().join("repo.git"),
        );
        let err = r.sync().await.unwrap_err();
        assert!(!err.contains("SECRET-TOKEN"), "{err}");
        assert!(err.contains("file://***@localhost/nonexistent"), "{err}");
    }

    #[test]
    fn only_the_followed_branch_is_cloned_and_fetched() {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("repo.git");
        let r = remote("https://git.example/acme/rules.git", dir.clone());
        let clone = r.sync_args();
        let pos = |a: &str| clone.iter().position(|x| x == a);
        assert_eq!(clone[0], "clone");
        assert!(pos("--single-branch").is_some(), "{clone:?}");
        assert_eq!(pos("--branch").map(|i| clone[i + 1].as_str()), Some("main"));
        // The URL comes after `--`.
        assert!(pos("--") < pos("https://git.example/acme/rules.git"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        let fetch = r.sync_args();
        assert!(fetch.contains(&"fetch".to_owned()), "{fetch:?}");
        assert_eq!(
            fetch.last().map(String::as_str),
            Some("+refs/heads/main:refs/heads/main")
        );
    }

    /// What the command's environment is, as `env` prints it.
    async fn environment(r: &Remote, parent: &BTreeMap<&str, &str>) -> BTreeMap<String, String> {
        let lookup = |name: &str| parent.get(name).map(OsString::from);
        let out = r
            .command("env", &[], &lookup)
            .stdout(std::process::Stdio::piped())
            .output()
            .await
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[tokio::test]
    async fn git_sees_only_what_it_needs_of_the_environment() {
        let state = tempfile::tempdir().unwrap();
        let mut r = remote("https://git.example/r.git", state.path().join("repo.git"));
        let parent = BTreeMap::from([
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/var/lib/supportopsd"),
            ("SSH_AUTH_SOCK", "/run/agent.sock"),
            ("FRESHDESK_API_KEY", "fd-secret-key"),
            ("SUPPORTOPSD_ADMIN_TOKEN", "admin-secret"),
            ("http_proxy", "http://proxy:3128"),
        ]);
        let env = environment(&r, &parent).await;
        let names: Vec<&str> = env.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["GIT_TERMINAL_PROMPT", "HOME", "PATH", "SSH_AUTH_SOCK"]
        );
        assert_eq!(env["GIT_TERMINAL_PROMPT"], "0");
        assert_eq!(env["PATH"], "/usr/bin:/bin");

        // With credentials: the extra header, still nothing else.
        r.credentials = Some(Secret::new(b"ops:token".to_vec()));
        let env = environment(&r, &parent).await;
        let names: Vec<&str> = env.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "GIT_CONFIG_COUNT",
                "GIT_CONFIG_KEY_0",
                "GIT_CONFIG_VALUE_0",
                "GIT_TERMINAL_PROMPT",
                "HOME",
                "PATH",
                "SSH_AUTH_SOCK"
            ]
        );
        assert_eq!(env["GIT_CONFIG_KEY_0"], "http.extraHeader");
        // Neither PATH nor HOME: a default PATH, no HOME.
        r.credentials = None;
        let env = environment(&r, &BTreeMap::from([("FRESHDESK_API_KEY", "x")])).await;
        let names: Vec<&str> = env.keys().map(String::as_str).collect();
        assert_eq!(names, ["GIT_TERMINAL_PROMPT", "PATH"]);
        assert_eq!(env["PATH"], DEFAULT_PATH);
    }
}
