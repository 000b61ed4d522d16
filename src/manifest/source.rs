//! Where manifests come from: the working tree or a git revision read straight from the object
//! database (no checkout). Produces raw bytes per file; decoding and parsing happen later, so an
//! unreadable file is a diagnostic, never a crash.

use std::fmt;
use std::fs;
use std::path::{Component, Path, PathBuf};

use git2::{ObjectType, Repository};

/// Files larger than this are refused (a diagnostic), not read into memory.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The folders of a manifest repository and the kind of file each holds.
pub const FOLDERS: [(&str, FileKind); 3] = [
    ("integrations", FileKind::Integration),
    ("rules", FileKind::Rule),
    ("tests", FileKind::Test),
];

/// What a manifest file declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    /// `integrations/*.toml`
    Integration,
    /// `rules/*.toml`
    Rule,
    /// `tests/*.toml`
    Test,
}

/// Where to read manifests from.
#[derive(Debug, Clone)]
pub struct Source {
    /// The repository (or any folder, for the working tree).
    pub repo: PathBuf,
    /// Sub-folder of the repository holding the manifests (`--path`).
    pub subdir: Option<PathBuf>,
    /// A git revision (`--rev`); `None` reads the working tree.
    pub rev: Option<String>,
}

/// A file's contents as read, or why it could not be read.
#[derive(Debug, Clone)]
pub enum Contents {
    /// The bytes (at most [`MAX_FILE_BYTES`]).
    Bytes(Vec<u8>),
    /// Larger than [`MAX_FILE_BYTES`].
    TooLarge(u64),
    /// A symbolic link (never followed: it could point outside the repository).
    Symlink,
}

/// One manifest file.
#[derive(Debug, Clone)]
pub struct RawFile {
    /// Path relative to the manifest root, with `/` separators (`rules/urgent.toml`).
    pub path: String,
    /// What it declares.
    pub kind: FileKind,
    /// Contents.
    pub contents: Contents,
}

/// The revision manifests were read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revision {
    /// The working tree (uncommitted changes included).
    WorkTree,
    /// A commit.
    Commit {
        /// Full commit id.
        id: String,
        /// What the user asked for (`HEAD~1`, `main`).
        spec: String,
    },
}

/// Everything read from one source: manifest files and access to fixtures.
#[derive(Debug)]
pub struct Snapshot {
    /// The revision.
    pub revision: Revision,
    /// Manifest files, sorted by path.
    pub files: Vec<RawFile>,
    reader: Reader,
}

#[derive(Debug)]
enum Reader {
    Dir(PathBuf),
    Git { repo: PathBuf, tree: git2::Oid },
}

/// Why a source could not be read at all (as opposed to a bad file, which is a diagnostic).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest folder does not exist.
    #[error("no manifest repository at {0}")]
    NotFound(PathBuf),
    /// `--path` escapes the repository.
    #[error("--path {0} must be a relative path inside the repository")]
    BadSubdir(PathBuf),
    /// Reading a directory failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// git could not open the repository or resolve the revision.
    #[error("git: {context}: {message}")]
    Git {
        /// What was being done.
        context: String,
        /// libgit2's message.
        message: String,
    },
    /// The revision is a commit the followed branch does not contain (an unmerged branch, a
    /// commit nobody reviewed into it), so it may not be pinned.
    #[error(
        "{rev} ({commit}) is not on the followed branch {followed}: only a commit the branch contains can be pinned (merge it first)"
    )]
    NotOnBranch {
        /// The revision as given.
        rev: String,
        /// What it resolved to (abbreviated).
        commit: String,
        /// The revision the daemon follows (`--rev`, `--branch`, the remote's branch).
        followed: String,
    },
}

/// Why a fixture could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FixtureError {
    /// The path is absolute, contains `..`, or leaves the repository through a link.
    #[error(
        "fixture path `{0}` must stay inside the repository (no `..`, no absolute paths, no links out)"
    )]
    Escapes(String),
    /// No such file.
    #[error("fixture `{0}` does not exist")]
    Missing(String),
    /// Larger than [`MAX_FILE_BYTES`].
    #[error("fixture `{0}` is larger than 1 MiB")]
    TooLarge(String),
    /// Any other read failure.
    #[error("cannot read fixture `{path}`: {message}")]
    Unreadable {
        /// The fixture path.
        path: String,
        /// Why.
        message: String,
    },
}

// === impl Source ===

impl Source {
    /// Reads every manifest file.
    pub fn read(&self) -> Result<Snapshot, Error> {
        let subdir = match &self.subdir {
            Some(s) => Some(relative_inside(s).ok_or_else(|| Error::BadSubdir(s.clone()))?),
            None => None,
        };
        match &self.rev {
            None => read_dir_tree(&self.repo, subdir.as_deref()),
            Some(rev) => read_git_tree(&self.repo, subdir.as_deref(), rev),
        }
    }
}

/// Normalises a relative path that stays inside its base (`a/./b` → `a/b`); `None` when it
/// is absolute or climbs out with `..`.
fn relative_inside(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn read_dir_tree(repo: &Path, subdir: Option<&Path>) -> Result<Snapshot, Error> {
    let root = match subdir {
        Some(s) => repo.join(s),
        None => repo.to_path_buf(),
    };
    if !root.is_dir() {
        return Err(Error::NotFound(root));
    }
    let mut files = Vec::new();
    for (folder, kind) in FOLDERS {
        let dir = root.join(folder);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(Error::Io { path: dir, source }),
        };
        for entry in entries {
            let entry = entry.map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.ends_with(".toml") || name.starts_with('.') {
                continue;
            }
            let path = format!("{folder}/{name}");
            let meta = fs::symlink_metadata(entry.path()).map_err(|source| Error::Io {
                path: entry.path(),
                source,
            })?;
            let contents = if meta.file_type().is_symlink() {
                Contents::Symlink
            } else if !meta.is_file() {
                continue;
            } else if meta.len() > MAX_FILE_BYTES {
                Contents::TooLarge(meta.len())
            } else {
                let bytes = fs::read(entry.path()).map_err(|source| Error::Io {
                    path: entry.path(),
                    source,
                })?;
                Contents::Bytes(bytes)
            };
            files.push(RawFile {
                path,
                kind,
                contents,
            });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Snapshot {
        revision: Revision::WorkTree,
        files,
        reader: Reader::Dir(root),
    })
}

fn git_err(context: impl Into<String>) -> impl FnOnce(git2::Error) -> Error {
    let context = context.into();
    move |e| Error::Git {
        context,
        message: e.message().to_owned(),
    }
}

/// The full id of the commit `rev` names in the repository at (or above) `repo_path`.
pub fn resolve_commit(repo_path: &Path, rev: &str) -> Result<String, Error> {
    let repo = Repository::discover(repo_path).map_err(git_err(format!(
        "open repository at {}",
        repo_path.display()
    )))?;
    let object = repo
        .revparse_single(rev)
        .map_err(git_err(format!("resolve revision {rev}")))?;
    let commit = object
        .peel_to_commit()
        .map_err(git_err(format!("{rev} is not a commit")))?;
    Ok(commit.id().to_string())
}

/// The full id of the commit `rev` names, if the revision `followed` contains it (it is that
/// commit or one of its ancestors): what may be pinned, so that a pin cannot put a commit in
/// use that never went through the branch's review (SEC-06).
pub fn resolve_on_branch(repo_path: &Path, rev: &str, followed: &str) -> Result<String, Error> {
    let repo = Repository::discover(repo_path).map_err(git_err(format!(
        "open repository at {}",
        repo_path.display()
    )))?;
    let peel = |spec: &str| {
        repo.revparse_single(spec)
            .map_err(git_err(format!("resolve revision {spec}")))?
            .peel_to_commit()
            .map(|c| c.id())
            .map_err(git_err(format!("{spec} is not a commit")))
    };
    let commit = peel(rev)?;
    let head = peel(followed)?;
    let contained = commit == head
        || repo
            .graph_descendant_of(head, commit)
            .map_err(git_err(format!("walk the history of {followed}")))?;
    if !contained {
        let id = commit.to_string();
        return Err(Error::NotOnBranch {
            rev: rev.to_owned(),
            commit: id[..12.min(id.len())].to_owned(),
            followed: followed.to_owned(),
        });
    }
    Ok(commit.to_string())
}

/// Who wrote a commit, when, and what its message says (the console's overview shows the
/// applied revision with them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitSummary {
    /// The author's name (the e-mail address is left out).
    pub author: String,
    /// The message's first line.
    pub summary: String,
    /// The commit time, milliseconds since the Unix epoch (0 before 1970).
    pub time_ms: u64,
}

/// The author, first message line and time of `commit` in the repository at (or above)
/// `repo_path`.
pub fn commit_summary(repo_path: &Path, commit: &str) -> Result<CommitSummary, Error> {
    let repo = Repository::discover(repo_path).map_err(git_err(format!(
        "open repository at {}",
        repo_path.display()
    )))?;
    let c = repo
        .revparse_single(commit)
        .and_then(|o| o.peel_to_commit())
        .map_err(git_err(format!("resolve commit {commit}")))?;
    let author = c.author();
    Ok(CommitSummary {
        author: String::from_utf8_lossy(author.name_bytes()).into_owned(),
        summary: String::from_utf8_lossy(c.summary_bytes().unwrap_or_default()).into_owned(),
        time_ms: u64::try_from(c.time().seconds())
            .unwrap_or(0)
            .saturating_mul(1000),
    })
}

/// The git directory of the repository at (or above) `repo_path` (what to watch for new
/// commits).
pub fn git_dir(repo_path: &Path) -> Result<PathBuf, Error> {
    let repo = Repository::discover(repo_path).map_err(git_err(format!(
        "open repository at {}",
        repo_path.display()
    )))?;
    Ok(repo.path().to_path_buf())
}

fn read_git_tree(repo_path: &Path, subdir: Option<&Path>, rev: &str) -> Result<Snapshot, Error> {
    let repo = Repository::discover(repo_path).map_err(git_err(format!(
        "open repository at {}",
        repo_path.display()
    )))?;
    let object = repo
        .revparse_single(rev)
        .map_err(git_err(format!("resolve revision {rev}")))?;
    let commit = object
        .peel_to_commit()
        .map_err(git_err(format!("{rev} is not a commit")))?;
    let mut tree = commit.tree().map_err(git_err("read commit tree"))?;
    // `--repo` may point below the repository's top level: manifests are relative to it.
    let mut prefix = PathBuf::new();
    if let Some(workdir) = repo.workdir() {
        let workdir = workdir
            .canonicalize()
            .unwrap_or_else(|_| workdir.to_path_buf());
        if let Ok(abs) = repo_path.canonicalize()
            && let Ok(rel) = abs.strip_prefix(&workdir)
        {
            prefix.push(rel);
        }
    }
    if let Some(s) = subdir {
        prefix.push(s);
    }
    let prefix_str = path_to_slash(&prefix);
    if !prefix_str.is_empty() {
        let entry = tree
            .get_path(&prefix)
            .map_err(|_| Error::NotFound(repo_path.join(subdir.unwrap_or(Path::new("")))))?;
        tree = entry
            .to_object(&repo)
            .and_then(|o| o.peel_to_tree())
            .map_err(git_err(format!("{prefix_str} is not a folder at {rev}")))?;
    }
    let mut files = Vec::new();
    for (folder, kind) in FOLDERS {
        let Ok(entry) = tree.get_path(Path::new(folder)) else {
            continue;
        };
        let Ok(sub) = entry.to_object(&repo).and_then(|o| o.peel_to_tree()) else {
            continue;
        };
        for item in sub.iter() {
            let Ok(name) = item.name() else { continue };
            if !name.ends_with(".toml") || name.starts_with('.') {
                continue;
            }
            let path = format!("{folder}/{name}");
            let contents = blob_contents(&repo, &item)?;
            let Some(contents) = contents else { continue };
            files.push(RawFile {
                path,
                kind,
                contents,
            });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Snapshot {
        revision: Revision::Commit {
            id: commit.id().to_string(),
            spec: rev.to_owned(),
        },
        files,
        reader: Reader::Git {
            repo: repo.path().to_path_buf(),
            tree: tree.id(),
        },
    })
}

/// Mode of a symbolic link in a git tree.
const GIT_SYMLINK_MODE: i32 = 0o120_000;

fn blob_contents(repo: &Repository, item: &git2::TreeEntry<'_>) -> Result<Option<Contents>, Error> {
    if item.kind() != Some(ObjectType::Blob) {
        return Ok(None);
    }
    if item.filemode() == GIT_SYMLINK_MODE {
        return Ok(Some(Contents::Symlink));
    }
    let blob = repo.find_blob(item.id()).map_err(git_err("read blob"))?;
    let len = blob.size() as u64;
    Ok(Some(if len > MAX_FILE_BYTES {
        Contents::TooLarge(len)
    } else {
        Contents::Bytes(blob.content().to_vec())
    }))
}

fn path_to_slash(p: &Path) -> String {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

// === impl Snapshot ===

impl Snapshot {
    /// Builds a snapshot from files in memory (tests, benchmarks, fuzzing).
    pub fn in_memory(files: Vec<RawFile>) -> Snapshot {
        Snapshot {
            revision: Revision::WorkTree,
            files,
            reader: Reader::Dir(PathBuf::new()),
        }
    }

    /// Reads a fixture named relative to the `tests/` folder (`fixtures/ticket.json`).
    /// The path may not leave the repository: no `..`, no absolute path, no symbolic links.
    pub fn read_fixture(&self, rel: &str) -> Result<Vec<u8>, FixtureError> {
        let escapes = || FixtureError::Escapes(rel.to_owned());
        let clean = relative_inside(Path::new(rel)).ok_or_else(escapes)?;
        if clean.as_os_str().is_empty() || rel.contains('\\') {
            return Err(escapes());
        }
        let clean = Path::new("tests").join(clean);
        match &self.reader {
            Reader::Dir(root) => {
                if root.as_os_str().is_empty() {
                    return Err(FixtureError::Missing(rel.to_owned()));
                }
                // Refuse a link anywhere on the way, so nothing outside the root is read.
                let mut cur = root.clone();
                for c in clean.components() {
                    cur.push(c);
                    match fs::symlink_metadata(&cur) {
                        Ok(m) if m.file_type().is_symlink() => return Err(escapes()),
                        Ok(_) => {}
                        Err(_) => return Err(FixtureError::Missing(rel.to_owned())),
                    }
                }
                let meta = fs::metadata(&cur).map_err(|e| FixtureError::Unreadable {
                    path: rel.to_owned(),
                    message: e.to_string(),
                })?;
                if !meta.is_file() {
                    return Err(FixtureError::Missing(rel.to_owned()));
                }
                if meta.len() > MAX_FILE_BYTES {
                    return Err(FixtureError::TooLarge(rel.to_owned()));
                }
                fs::read(&cur).map_err(|e| FixtureError::Unreadable {
                    path: rel.to_owned(),
                    message: e.to_string(),
                })
            }
            Reader::Git { repo, tree, .. } => {
                let unreadable = |e: git2::Error| FixtureError::Unreadable {
                    path: rel.to_owned(),
                    message: e.message().to_owned(),
                };
                let repo = Repository::open(repo).map_err(unreadable)?;
                let tree = repo.find_tree(*tree).map_err(unreadable)?;
                let entry = tree
                    .get_path(&clean)
                    .map_err(|_| FixtureError::Missing(rel.to_owned()))?;
                match blob_contents(&repo, &entry) {
                    Ok(Some(Contents::Bytes(b))) => Ok(b),
                    Ok(Some(Contents::TooLarge(_))) => Err(FixtureError::TooLarge(rel.to_owned())),
                    Ok(Some(Contents::Symlink)) => Err(escapes()),
                    Ok(None) => Err(FixtureError::Missing(rel.to_owned())),
                    Err(e) => Err(FixtureError::Unreadable {
                        path: rel.to_owned(),
                        message: e.to_string(),
                    }),
                }
            }
        }
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Revision::WorkTree => f.write_str("working tree"),
            Revision::Commit { id, spec } if id.starts_with(spec.as_str()) => {
                write!(f, "{}", &id[..12.min(id.len())])
            }
            Revision::Commit { id, spec } => write!(f, "{spec} ({})", &id[..12.min(id.len())]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_inside_refuses_escapes() {
        assert_eq!(
            relative_inside(Path::new("a/./b")),
            Some(PathBuf::from("a/b"))
        );
        assert_eq!(relative_inside(Path::new("../a")), None);
        assert_eq!(relative_inside(Path::new("a/../../b")), None);
        assert_eq!(relative_inside(Path::new("/etc/passwd")), None);
    }

    #[test]
    fn fixtures_cannot_escape() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("tests/fixtures")).unwrap();
        fs::write(dir.path().join("tests/fixtures/a.json"), "{}").unwrap();
        fs::write(dir.path().join("secret.txt"), "x").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(
            dir.path().join("secret.txt"),
            dir.path().join("tests/link.json"),
        )
        .unwrap();
        let snap = read_dir_tree(dir.path(), None).unwrap();
        assert_eq!(snap.read_fixture("fixtures/a.json").unwrap(), b"{}");
        assert!(matches!(
            snap.read_fixture("../secret.txt"),
            Err(FixtureError::Escapes(_))
        ));
        assert!(matches!(
            snap.read_fixture("/etc/passwd"),
            Err(FixtureError::Escapes(_))
        ));
        #[cfg(unix)]
        assert!(matches!(
            snap.read_fixture("link.json"),
            Err(FixtureError::Escapes(_))
        ));
        assert!(matches!(
            snap.read_fixture("fixtures/b.json"),
            Err(FixtureError::Missing(_))
        ));
    }

    /// SEC-06: only the followed branch's commits (its head and their ancestors) resolve for a
    /// pin; an unmerged branch, by name or by commit, does not.
    #[test]
    fn sec_06_only_commits_on_the_followed_branch_can_be_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let tree = repo
            .find_tree(repo.treebuilder(None).unwrap().write().unwrap())
            .unwrap();
        let commit = |refname: Option<&str>, parents: &[&git2::Commit<'_>], msg: &str| {
            repo.commit(refname, &sig, &sig, msg, &tree, parents)
                .unwrap()
        };
        let first = commit(Some("HEAD"), &[], "first");
        let first_c = repo.find_commit(first).unwrap();
        let second = commit(Some("HEAD"), &[&first_c], "second");
        let evil = commit(Some("refs/heads/evil"), &[&first_c], "unreviewed");
        let (first, second, evil) = (first.to_string(), second.to_string(), evil.to_string());
        for ok in [first.as_str(), second.as_str(), "HEAD", "HEAD~1"] {
            let resolved = resolve_on_branch(dir.path(), ok, "HEAD").unwrap();
            assert!(resolved == first || resolved == second, "{ok}: {resolved}");
        }
        for refused in [evil.as_str(), "evil"] {
            match resolve_on_branch(dir.path(), refused, "HEAD") {
                Err(e @ Error::NotOnBranch { .. }) => {
                    assert!(
                        e.to_string().contains("not on the followed branch HEAD"),
                        "{e}"
                    );
                }
                other => panic!("{refused} resolved: {other:?}"),
            }
        }
        // Following the other branch, its own commits are the pinnable ones.
        assert_eq!(
            resolve_on_branch(dir.path(), &evil, "refs/heads/evil").unwrap(),
            evil
        );
        assert!(matches!(
            resolve_on_branch(dir.path(), "no-such-rev", "HEAD"),
            Err(Error::Git { .. })
        ));
    }
}
