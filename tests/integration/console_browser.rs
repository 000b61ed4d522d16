//! The console in a real browser (headless Chromium through chromedriver, see
//! `support/browser.rs`): screenshots of each page at 1280 and 360 px go to
//! `target/tmp/console-screenshots/`.

use crate::daemon_support::setup;
use crate::support::browser::{Browser, NARROW, WIDE};

/// The harness itself: a page of the daemon opens, at both widths, and is photographed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_harness_opens_a_daemon_page_at_both_widths() {
    let Some(browser) = Browser::start("harness").await else {
        return;
    };
    let (_fake, _repo, _state, daemon, _client) = setup(&[]).await;
    browser.open(&format!("{}/healthz", daemon.url)).await;
    let body = browser.text("body").await;
    assert!(body.contains("ok"), "{body}");
    for width in [WIDE, NARROW] {
        browser.resize(width).await;
        assert_eq!(browser.overflows().await, None);
        let shot = browser.screenshot("healthz").await;
        assert!(std::fs::metadata(&shot).unwrap().len() > 100);
    }
    println!("screenshots in {}", browser.shots().display());
    browser.close().await;
}
