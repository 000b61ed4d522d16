//! A real browser for the console tests: headless Chromium driven through chromedriver
//! (WebDriver, with `fantoccini` over rustls), screenshots written as test artifacts.
//!
//! Chromium and chromedriver come from the Debian packages (`apt-get install chromium
//! chromium-driver`; `.ci/run` installs them when missing). They are found through `$CHROME` and
//! `$CHROMEDRIVER`, else on `PATH`. When they are missing the tests fail saying how to install
//! them, unless `SUPPORTOPSD_SKIP_BROWSER=1` is set: then they print that they skipped.
//!
//! Screenshots go to [`screenshot_dir`]: `target/tmp/console-screenshots/` (cargo's
//! `CARGO_TARGET_TMPDIR`), or the folder `$SUPPORTOPSD_SCREENSHOT_DIR` names.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// The desktop width the screenshots are taken at.
pub(crate) const WIDE: u32 = 1280;
/// The phone width the screenshots and the overflow check are made at.
pub(crate) const NARROW: u32 = 360;
/// The window height of both.
const HEIGHT: u32 = 900;

/// How to install what is missing, for the failure message.
const INSTALL: &str = "install them with `apt-get install chromium chromium-driver` (or name them \
     with $CHROME and $CHROMEDRIVER), or set SUPPORTOPSD_SKIP_BROWSER=1 to skip the browser tests";

/// A headless Chromium session; the chromedriver behind it is killed when this is dropped.
pub(crate) struct Browser {
    /// The WebDriver session.
    pub(crate) client: Client,
    driver: Child,
    /// Where [`Browser::screenshot`] writes.
    shots: PathBuf,
    /// The test's name, the prefix of its screenshots.
    test: String,
}

/// The executable `var` names (none when it is not there), else the first of `names` on `PATH`.
fn locate(var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// The folder the screenshots go to (created): `$SUPPORTOPSD_SCREENSHOT_DIR`, else
/// `target/tmp/console-screenshots/`.
pub(crate) fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("SUPPORTOPSD_SCREENSHOT_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"));
    std::fs::create_dir_all(&dir).expect("create the screenshot folder");
    dir
}

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, `WIDE` pixels wide. `None` (said on
    /// stderr) when they are missing and `SUPPORTOPSD_SKIP_BROWSER=1`; a failure, saying how to
    /// install them, when they are missing otherwise.
    pub(crate) async fn start(test: &str) -> Option<Browser> {
        let driver = locate("CHROMEDRIVER", &["chromedriver"]);
        let chrome = locate("CHROME", &["chromium", "chromium-browser", "google-chrome"]);
        let (Some(driver), Some(chrome)) = (driver, chrome) else {
            let skip = std::env::var("SUPPORTOPSD_SKIP_BROWSER").is_ok_and(|v| v == "1");
            assert!(
                skip,
                "{test}: the browser tests need Chromium and chromedriver, which were not found; {INSTALL}"
            );
            // Straight to stderr, past the test harness's capture: a skip is never silent.
            let _ = writeln!(
                std::io::stderr(),
                "{test}: SKIPPED (SUPPORTOPSD_SKIP_BROWSER=1, and Chromium or chromedriver is missing): the console was not tested in a browser"
            );
            return None;
        };
        let port = free_port();
        // Its own process group, which the browsers it starts join: ending the group ends them
        // all, even when the test fails before it closes the session.
        let mut child = Command::new(&driver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}; {INSTALL}", driver.display()));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{} exited at start ({status})", driver.display());
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{} did not listen on port {port} within 20 s",
                driver.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chrome,
                "args": [
                    "--headless=new",
                    // CI runs as root, where Chromium's sandbox cannot start.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-extensions",
                    "--no-first-run",
                    "--hide-scrollbars",
                    "--lang=en-US",
                    format!("--window-size={WIDE},{HEIGHT}"),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object")
        };
        let client = ClientBuilder::rustls()
            .expect("rustls")
            .capabilities(capabilities)
            .connect(&format!("http://{addr}"))
            .await
            .unwrap_or_else(|e| {
                kill_group(&mut child);
                panic!(
                    "start a headless Chromium session ({}): {e}",
                    chrome.display()
                )
            });
        let shots = screenshot_dir();
        // A failure's picture from an earlier run would mislead.
        let _ = std::fs::remove_file(shots.join(format!("{test}-failure.png")));
        let browser = Browser {
            client,
            driver: child,
            shots,
            test: test.to_owned(),
        };
        browser.resize(WIDE).await;
        Some(browser)
    }

    /// Makes the page's viewport `width` CSS pixels wide (and [`HEIGHT`] high), checked.
    pub(crate) async fn resize(&self, width: u32) {
        self.client
            .set_window_size(width, HEIGHT)
            .await
            .expect("set the window size");
        // The window's frame (none when headless, but do not count on it) is added back.
        let inner = self.inner_width().await;
        if inner != u64::from(width) {
            let outer = i64::from(width) + (i64::from(width) - inner as i64);
            self.client
                .set_window_size(u32::try_from(outer).expect("a width"), HEIGHT)
                .await
                .expect("set the window size");
        }
        assert_eq!(
            self.inner_width().await,
            u64::from(width),
            "the viewport is {width} px wide"
        );
    }

    /// Makes the viewport as high as the page (at most `max` CSS pixels), for a picture of all
    /// of it; [`Browser::resize`] makes it the usual height again.
    pub(crate) async fn fit_height(&self, max: u32) {
        let sizes = self
            .script(
                "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]",
            )
            .await;
        let page = sizes[0].as_u64().expect("scrollHeight").min(u64::from(max));
        let frame = sizes[1].as_u64().unwrap_or(0);
        let (width, _) = self
            .client
            .get_window_size()
            .await
            .expect("the window size");
        self.client
            .set_window_size(
                u32::try_from(width).expect("a width"),
                u32::try_from(page + frame).expect("a height"),
            )
            .await
            .expect("set the window size");
    }

    /// `window.innerWidth`.
    async fn inner_width(&self) -> u64 {
        self.script("return window.innerWidth")
            .await
            .as_u64()
            .expect("innerWidth is a number")
    }

    /// Runs `script` in the page and returns its result.
    pub(crate) async fn script(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("run {script:?}: {e}"))
    }

    /// Opens `url` and waits for the page's `<main id="main">`.
    pub(crate) async fn open(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The element `css` selects (waiting up to 30 s for it to appear: CI is busy).
    pub(crate) async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => self.fail(&format!("find {css:?}: {e}")).await,
        }
    }

    /// Fails the test with `what`, the page's URL and text, after a screenshot of it
    /// (`<test>-failure.png`).
    pub(crate) async fn fail(&self, what: &str) -> ! {
        let shot = self.shots.join(format!("{}-failure.png", self.test));
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::write(&shot, png);
        }
        let text = match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        panic!(
            "{what}\non {} (screenshot: {}), whose text is:\n{text}",
            self.url().await,
            shot.display()
        )
    }

    /// Every element `css` selects now (none is no error).
    pub(crate) async fn find_all(&self, css: &str) -> Vec<fantoccini::elements::Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css:?}: {e}"))
    }

    /// The page's URL now.
    pub(crate) async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    /// The text of the element `css` selects.
    pub(crate) async fn text(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("read the text of {css:?}: {e}"))
    }

    /// `None` when the document is no wider than the viewport (no horizontal scroll bar), else
    /// the two widths and the innermost elements that stick out on the right.
    pub(crate) async fn overflows(&self) -> Option<String> {
        let found = self
            .script(
                "const inner = window.innerWidth;
                 const scroll = document.documentElement.scrollWidth;
                 if (scroll <= inner) return null;
                 const out = [];
                 const name = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
                   (e.className && typeof e.className === 'string'
                      ? '.' + e.className.trim().split(/\\s+/).join('.') : '');
                 for (const e of document.querySelectorAll('body *')) {
                   const r = e.getBoundingClientRect();
                   if (r.right > inner + 0.5 && ![...e.children].some(
                         c => c.getBoundingClientRect().right > inner + 0.5)) {
                     out.push(name(e) + ' (right edge ' + Math.round(r.right) + ' px: ' +
                              (e.textContent || '').trim().slice(0, 60) + ')');
                     if (out.length >= 8) break;
                   }
                 }
                 const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
                 for (let t = walk.nextNode(); t && out.length < 8; t = walk.nextNode()) {
                   const range = document.createRange();
                   range.selectNodeContents(t);
                   const r = range.getBoundingClientRect();
                   if (r.right > inner + 0.5) {
                     out.push('text in ' + name(t.parentElement) + ' (right edge ' +
                              Math.round(r.right) + ' px: ' + t.textContent.trim().slice(0, 60) + ')');
                   }
                 }
                 return 'scrollWidth ' + scroll + ' > innerWidth ' + inner + '; sticking out: ' +
                        out.join('; ');",
            )
            .await;
        found.as_str().map(str::to_owned)
    }

    /// Writes a PNG of the whole page (at most 6000 px high) at the viewport's width as
    /// `<test>-<name>-<width>.png`, and returns its path.
    pub(crate) async fn screenshot(&self, name: &str) -> PathBuf {
        let width = self.inner_width().await;
        let (outer_width, outer_height) = self
            .client
            .get_window_size()
            .await
            .expect("the window size");
        self.fit_height(6000).await;
        let png = self.client.screenshot().await;
        self.client
            .set_window_size(
                u32::try_from(outer_width).expect("a width"),
                u32::try_from(outer_height).expect("a height"),
            )
            .await
            .expect("restore the window size");
        let png = png.unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let path = self.shots.join(format!("{}-{name}-{width}.png", self.test));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }

    /// Where the screenshots go.
    pub(crate) fn shots(&self) -> &Path {
        &self.shots
    }

    /// Ends the session and chromedriver.
    pub(crate) async fn close(self) {
        let client = self.client.clone();
        let _ = client.close().await;
        // Dropped: chromedriver's process group is ended.
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
    }
}

/// Ends chromedriver and every browser it started (its process group, see [`Browser::start`]).
fn kill_group(driver: &mut Child) {
    if let Ok(Some(_)) = driver.try_wait() {
        // Reaped already: its id may belong to another process now.
        return;
    }
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", driver.id())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = driver.kill();
    let _ = driver.wait();
}
