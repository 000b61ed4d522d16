//! A remote manifest repository: cloned (bare) into the state directory and fetched before
//! every pass that looks for a new commit (`--poll-interval`, SIGHUP, `POST /api/sync`).
//!
//! Fetching runs the system's `git` (its HTTPS and SSH support, its own credential helpers and
//! known hosts), so that the daemon does not carry a second TLS stack for git. Credentials for
//! HTTPS come from a secret reference and reach git through its environment as an
//! `http.extraHeader` (never in the URL or the command line, so never in `ps`, logs or errors).
//! `GIT_TERMINAL_PROMPT=0`: git never waits for a password.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;

use crate::secrets::Secret;

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
        if self.dir.join("HEAD").is_file() {
            let refspec = format!("+refs/heads/{0}:refs/heads/{0}", self.branch);
            let dir = self.dir.to_string_lossy().into_owned();
            self.git(&[
                "-C", &dir, "fetch", "--quiet", "--prune", "origin", &refspec,
            ])
            .await
        } else {
            if let Some(parent) = self.dir.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            let dir = self.dir.to_string_lossy().into_owned();
            self.git(&["clone", "--quiet", "--bare", "--", &self.url, &dir])
                .await
        }
    }

    async fn git(&self, args: &[&str]) -> Result<(), String> {
        let mut cmd = tokio::process::Command::new("git");
        cmd.args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(c) = &self.credentials {
            let basic = base64::engine::general_purpose::STANDARD.encode(c.expose());
            cmd.env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env(
                    "GIT_CONFIG_VALUE_0",
                    format!("Authorization: Basic {basic}"),
                );
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run git (is it installed?): {e}"))?;
        let out = tokio::time::timeout(GIT_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| format!("git {} took longer than {GIT_TIMEOUT:?}", args[0]))?
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        Err(format!(
            "git {} from {} failed: {}",
            if args.contains(&"clone") {
                "clone"
            } else {
                "fetch"
            },
            self.url,
            crate::platforms::http::excerpt(first)
        ))
    }
}
