//! Test harness: temporary manifest repositories (plain folders or git repositories) and a
//! runner for the real `supportopsd` binary.

pub(crate) mod browser;

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// The repository's `examples/repo`.
pub(crate) fn examples_repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/repo")
}

/// A manifest repository in a temporary folder.
pub(crate) struct TestRepo {
    dir: TempDir,
}

/// What a command printed and how it exited.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl TestRepo {
    /// An empty repository.
    pub(crate) fn new() -> TestRepo {
        TestRepo {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A copy of `examples/repo`.
    pub(crate) fn examples() -> TestRepo {
        let repo = TestRepo::new();
        copy_dir(&examples_repo(), repo.path());
        repo
    }

    /// The folder.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file (creating folders).
    pub(crate) fn file(&self, rel: &str, text: &str) -> &TestRepo {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
        self
    }

    /// Writes raw bytes.
    pub(crate) fn bytes(&self, rel: &str, bytes: &[u8]) -> &TestRepo {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, bytes).expect("write");
        self
    }

    /// Removes a file.
    pub(crate) fn remove(&self, rel: &str) -> &TestRepo {
        std::fs::remove_file(self.path().join(rel)).expect("remove");
        self
    }

    /// Reads a file.
    pub(crate) fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).expect("read")
    }

    /// Commits everything in the folder (initialising the repository on first use) and returns
    /// the commit id.
    pub(crate) fn commit(&self, message: &str) -> String {
        let repo = git2::Repository::open(self.path())
            .or_else(|_| git2::Repository::init(self.path()))
            .expect("git init");
        let mut index = repo.index().expect("index");
        index
            .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
            .expect("add");
        index.update_all(["*"].iter(), None).expect("update");
        index.write().expect("write index");
        let tree = repo
            .find_tree(index.write_tree().expect("tree"))
            .expect("find tree");
        let sig = git2::Signature::now("test", "test@example.invalid").expect("sig");
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .expect("commit")
            .to_string()
    }

    /// Runs `supportopsd --repo . ARGS…` in this folder.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[], None)
    }

    /// Runs with extra environment and optional stdin.
    pub(crate) fn run_with(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&[u8]>,
    ) -> Output {
        use std::io::Write;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_supportopsd"));
        cmd.current_dir(self.path())
            .arg("--repo")
            .arg(".")
            .args(args)
            .env_remove("SUPPORTOPSD_KEY_FILE")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("STATE_DIRECTORY")
            .env_remove("SUPPORTOPSD_ADMIN_TOKEN")
            .env_remove("SUPPORTOPSD_READ_TOKEN")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn supportopsd");
        if let Some(input) = stdin {
            // The command may exit before reading its input (an error found first): a broken
            // pipe here is its answer, not the test's failure.
            let _ = child.stdin.take().expect("stdin").write_all(input);
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("wait");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).expect("copy");
        }
    }
}
