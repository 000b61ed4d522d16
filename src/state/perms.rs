//! The state directory's permissions (SEC-13): what the state holds — event payloads with
//! customer data, the audit log, sealed registration secrets — is for supportopsd's own user
//! only, whatever the umask.
//!
//! - The directory is created 0700, and tightened to 0700 when it exists more open (a warning
//!   says so when that is not possible, e.g. it belongs to another user).
//! - Every file in it is made 0600 and every folder 0700. The ingest journal creates its files
//!   0600; sled creates its own (`conf`, `db`, `blobs/`, `snap.*`) with the process umask, and
//!   setting the umask needs `unsafe`, so they are tightened right after sled opened them and
//!   again by [`super::Store::secure_files`] (the daemon's housekeeping) for the snapshots and
//!   blobs sled writes later. Symbolic links are never followed.
//! - The repository clone (`repo.git`, written by git) is left as git made it: it holds only
//!   the manifests, and the 0700 directory closes it anyway.

use std::fs::{self, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// The mode of the state directory and its folders.
pub(crate) const DIR_MODE: u32 = 0o700;

/// The mode of every file in the state directory.
pub(crate) const FILE_MODE: u32 = 0o600;

/// The folder under the state directory that is not the state's (the repository clone).
const NOT_OURS: &str = "repo.git";

/// How deep folders are walked (sled's `blobs/` is one level down).
const MAX_DEPTH: usize = 4;

/// Creates `dir` (and missing parents) 0700, whatever the umask; tightens it to 0700 when it
/// already exists more open, and warns when that fails.
pub(crate) fn create_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    secure_dir(dir);
    Ok(())
}

/// Makes `dir` 0700 when it is open to the group or others; a warning when it cannot.
pub(crate) fn secure_dir(dir: &Path) {
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return;
    }
    match fs::set_permissions(dir, Permissions::from_mode(DIR_MODE)) {
        Ok(()) => {
            tracing::info!(dir = %dir.display(), was = format!("{mode:04o}"), "Made the state directory private (0700).");
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), mode = format!("{mode:04o}"), error = %e, "The state directory is open to other users and could not be made private; its event payloads and audit log may be readable by them. Make it 0700, owned by supportopsd's user.");
        }
    }
}

/// Makes every file under `dir` 0600 and every folder 0700 (see the module docs); returns how
/// many entries could not be tightened (each logged).
pub(crate) fn secure_files(dir: &Path) -> usize {
    walk(dir, 0)
}

fn walk(dir: &Path, depth: usize) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut failed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        // Never follows a symbolic link (`file_type` does not).
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let wanted = if kind.is_file() {
            FILE_MODE
        } else if kind.is_dir() && !(depth == 0 && entry.file_name() == NOT_OURS) {
            DIR_MODE
        } else {
            continue;
        };
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.permissions().mode() & 0o077 != 0
            && let Err(e) = fs::set_permissions(&path, Permissions::from_mode(wanted))
        {
            failed += 1;
            tracing::warn!(path = %path.display(), error = %e, "Could not make a state file private.");
        }
        if kind.is_dir() && depth + 1 < MAX_DEPTH {
            failed += walk(&path, depth + 1);
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn open_files_and_folders_are_made_private_and_links_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);

        for (name, m) in [("db", 0o644), ("conf", 0o666), ("ok", 0o600), ("x", 0o640)] {
            let p = dir.join(name);
            fs::write(&p, b"x").unwrap();
            fs::set_permissions(&p, Permissions::from_mode(m)).unwrap();
        }
        fs::create_dir_all(dir.join("blobs/deeper")).unwrap();
        fs::write(dir.join("blobs/deeper/1"), b"x").unwrap();
        fs::set_permissions(dir.join("blobs"), Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(dir.join("blobs/deeper/1"), Permissions::from_mode(0o644)).unwrap();
        // The repository clone is git's.
        fs::create_dir_all(dir.join("repo.git/hooks")).unwrap();
        fs::write(dir.join("repo.git/HEAD"), b"x").unwrap();
        fs::set_permissions(dir.join("repo.git/HEAD"), Permissions::from_mode(0o644)).unwrap();
        // A link to a file elsewhere is not followed.
        let outside = tmp.path().join("outside");
        fs::write(&outside, b"x").unwrap();
        fs::set_permissions(&outside, Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();

        assert_eq!(secure_files(&dir), 0);
        for name in ["db", "conf", "ok", "x", "blobs/deeper/1"] {
            assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
        }
        assert_eq!(mode(&dir.join("blobs")), 0o700);
        assert_eq!(mode(&dir.join("blobs/deeper")), 0o700);
        assert_eq!(mode(&dir.join("repo.git/HEAD")), 0o644);
        assert_eq!(mode(&outside), 0o644);
    }

    #[test]
    fn a_new_directory_and_its_parents_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/state");
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
    }
}
