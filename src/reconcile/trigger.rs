//! What starts a reconcile pass: a new commit seen by the file watcher (notify on the git
//! directory, debounced), a slow poll as the watcher's fallback, SIGHUP, `POST /api/sync`, and
//! the periodic resync that re-checks live state.

use std::path::Path;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::runtime::pass::{Cause, Request};

/// How long the watcher waits for a burst of file events (a `git commit` writes several files)
/// to settle before it asks for a pass.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// Watches the git directory of `repo` and asks for a pass when it changes. Returns the watcher,
/// which stops when dropped; `None` (logged) when watching is impossible, in which case the
/// poll carries on alone.
pub fn watch_git(
    repo: &Path,
    tx: mpsc::Sender<Request>,
    shutdown: CancellationToken,
) -> Option<notify::RecommendedWatcher> {
    let git_dir = match crate::manifest::source::git_dir(repo) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "Cannot watch the repository; polling only.");
            return None;
        }
    };
    let (raw_tx, mut raw_rx) = mpsc::channel::<()>(64);
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res
            && relevant(&event)
        {
            let _ = raw_tx.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "Cannot start the file watcher; polling only.");
            return None;
        }
    };
    // HEAD, packed-refs and FETCH_HEAD live at the top; branches under refs/.
    let mut watched = watcher.watch(&git_dir, RecursiveMode::NonRecursive).is_ok();
    let refs = git_dir.join("refs");
    watched &= watcher.watch(&refs, RecursiveMode::Recursive).is_ok();
    if !watched {
        tracing::warn!(dir = %git_dir.display(), "Cannot watch the git directory; polling only.");
        return None;
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                got = raw_rx.recv() => if got.is_none() { return },
            }
            // Let the burst settle, then ask once.
            tokio::time::sleep(DEBOUNCE).await;
            while raw_rx.try_recv().is_ok() {}
            let _ = tx.try_send(Request {
                cause: Cause::Git,
                reply: None,
            });
        }
    });
    tracing::info!(dir = %git_dir.display(), "Watching the repository for new commits.");
    Some(watcher)
}

/// Whether a file event may mean a new commit (reads and lock files do not).
fn relevant(event: &notify::Event) -> bool {
    use notify::EventKind;
    matches!(
        event.kind,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
    ) && !matches!(
        event.kind,
        EventKind::Modify(notify::event::ModifyKind::Metadata(_))
    ) && event.paths.iter().any(|p| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        !name.ends_with(".lock") && name != "index"
    })
}
