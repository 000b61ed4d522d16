//! The layer check: no module of `src/` imports from a module above it in the layer order that
//! `docs/ARCHITECTURE.md` documents (the table [`LAYERS`] below is that order, and the page says
//! so). Siblings on one layer (`webhook`, `execute`, `reconcile`) do not import each other
//! either.
//!
//! It reads the sources as text: comments and string literals are skipped, `use` trees are
//! expanded, `super::` is resolved, and a name a `mod.rs` re-exports from one of its children
//! (`pub use connector::Connector` in `platforms`) counts as that child's. Test-only code (a
//! `#[cfg(test)]` or `test-support` item, and files declared that way: unit tests, the fake
//! servers) may reach up: it is not part of the layering, and the compiler keeps production
//! code from depending on it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the point

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, lowest first. A unit is a module path pattern (`*` matches one segment); the
/// first pattern that matches a module names its unit. A unit may import its own modules and
/// any unit of a lower layer, nothing else.
const LAYERS: &[&[(&str, &[&str])]] = &[
    &[
        ("rules", &["rules"]),
        ("telemetry", &["telemetry"]),
        (
            // The ids every layer names, and the diagnostics with their suggestions.
            "manifest (ids, diagnostics)",
            &["manifest::id", "manifest::diagnostic"],
        ),
    ],
    &[("secrets", &["secrets"])],
    &[(
        // The static catalogue: what each platform offers, normalisation of its bodies.
        "platforms (catalogue)",
        &[
            "platforms",
            "platforms::catalog",
            "platforms::context",
            "platforms::reference",
            "platforms::*",
            "platforms::*::events",
            "platforms::*::actions",
        ],
    )],
    &[(
        // The host policy: its model, host patterns and the offline endpoint checks that
        // manifest validation runs.
        "policy",
        &["policy"],
    )],
    &[("manifest", &["manifest"])],
    &[(
        // What talks to the platforms: clients, connectors, registration, inbound verification.
        "platforms (connectors)",
        &[
            "platforms::connector",
            "platforms::http",
            "platforms::inbound",
            "platforms::params",
            "platforms::probe",
            "platforms::*::client",
            "platforms::*::connector",
            "platforms::*::params",
            "platforms::*::probe",
            "platforms::*::registration",
            "platforms::*::webhook",
            "platforms::*::values",
        ],
    )],
    &[
        ("event", &["event"]),
        (
            // The fake platforms (the tests' and `supportopsd demo`'s): servers on loopback
            // that play each platform, built on the connectors' own types. Only `cli::demo`
            // and test code may name them (`only_the_demo_and_tests_name_the_fakes`).
            "platforms (fakes)",
            &[
                "platforms::fakekit",
                "platforms::fakespec",
                "platforms::*::fake",
            ],
        ),
    ],
    &[("state", &["state"])],
    &[("plan", &["plan"]), ("testing", &["testing"])],
    &[("runtime", &["runtime"])],
    &[
        ("webhook", &["webhook"]),
        ("execute", &["execute"]),
        ("reconcile", &["reconcile"]),
    ],
    &[("daemon", &["daemon"])],
    &[("cli", &["cli"])],
];

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let crate_ = Crate::read(&src);
    let mut problems = Vec::new();
    for (module, file) in &crate_.files {
        if module.is_empty() || crate_.test_only.contains(module) {
            continue; // `lib.rs` only declares the modules
        }
        let from = unit_of(module)
            .unwrap_or_else(|| panic!("no layer for module `{}`", module.join("::")));
        for target in crate_.references(module, &file.code) {
            let Some(owner) = crate_.owner(&target) else {
                continue;
            };
            if crate_.test_only.contains(&owner) {
                continue;
            }
            let Some(to) = unit_of(&owner) else { continue };
            if from.name == to.name {
                continue;
            }
            if to.layer >= from.layer {
                problems.push(format!(
                    "{}: `crate::{}` is in {} (layer {}), which {} (layer {}) may not import",
                    file.path.display(),
                    target.join("::"),
                    to.name,
                    to.layer,
                    from.name,
                    from.layer,
                ));
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "imports against the layer order of docs/ARCHITECTURE.md:\n{}",
        problems.join("\n")
    );
}

/// The modules outside `state` that may name its sled backend, `state::Store`: only to open a
/// state (and, in `runtime`, to replay the ingest journal into it); everything else goes through
/// the `state::State` interface (docs/ARCHITECTURE.md, `src/state/interface.rs`).
const STORE_OPENERS: &[&str] = &[
    "runtime",
    "cli::events",
    "cli::pause",
    "cli::pin",
    "cli::plan",
    "cli::status",
    "cli::state",
];

#[test]
fn only_the_openers_name_the_sled_store() {
    let crate_ = Crate::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let mut problems = Vec::new();
    let mut openers = BTreeSet::new();
    for (module, file) in &crate_.files {
        let outside = module.first().is_some_and(|m| m != "state");
        if !outside || crate_.test_only.contains(module) {
            continue;
        }
        let name = module.join("::");
        let names_store = crate_
            .references(module, &file.code)
            .iter()
            .any(|t| t.len() >= 2 && t[0] == "state" && t[1] == "Store");
        if !names_store {
            continue;
        }
        if STORE_OPENERS.contains(&name.as_str()) {
            openers.insert(name);
        } else {
            problems.push(format!(
                "{}: names `crate::state::Store`; go through `crate::state::State` (or list the module in STORE_OPENERS if it opens a state)",
                file.path.display()
            ));
        }
    }
    for opener in STORE_OPENERS {
        if !openers.contains(*opener) {
            problems.push(format!(
                "`{opener}` is in STORE_OPENERS but does not name `crate::state::Store`: take it out"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The modules that are the fake platforms, and the one module outside them that may name them:
/// the daemon's own code never depends on a fake (test code may).
const FAKES: &[&str] = &[
    "platforms::fakekit",
    "platforms::fakespec",
    "platforms::*::fake",
];
const FAKE_USERS: &[&str] = &["cli::demo"];

fn is_fake(module: &[String]) -> bool {
    FAKES.iter().any(|pattern| {
        let parts: Vec<&str> = pattern.split("::").collect();
        parts.len() <= module.len() && parts.iter().zip(module).all(|(p, m)| *p == "*" || p == m)
    })
}

#[test]
fn only_the_demo_and_tests_name_the_fakes() {
    let crate_ = Crate::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let mut problems = Vec::new();
    let mut users = BTreeSet::new();
    for (module, file) in &crate_.files {
        if module.is_empty() || is_fake(module) || crate_.test_only.contains(module) {
            continue;
        }
        let names_a_fake = crate_
            .references(module, &file.code)
            .iter()
            .filter_map(|t| crate_.owner(t))
            .any(|owner| is_fake(&owner));
        if !names_a_fake {
            continue;
        }
        let name = module.join("::");
        if FAKE_USERS.contains(&name.as_str()) {
            users.insert(name);
        } else {
            problems.push(format!(
                "{}: names a fake platform; only `supportopsd demo` (cli::demo) and test code may",
                file.path.display()
            ));
        }
    }
    for user in FAKE_USERS {
        if !users.contains(*user) {
            problems.push(format!(
                "`{user}` is in FAKE_USERS but names no fake: take it out"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The check sees a fake named from daemon code.
    let module: Vec<String> = vec!["daemon".into(), "server".into()];
    let code = strip_test_items(&strip(
        "use crate::platforms::slack::fake::FakeSlack;\nfn f() {}\n",
    ));
    assert!(
        crate_
            .references(&module, &code)
            .iter()
            .filter_map(|t| crate_.owner(t))
            .any(|owner| is_fake(&owner))
    );
}

#[test]
fn every_module_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let crate_ = Crate::read(&src);
    assert!(
        crate_.files.len() > 50,
        "read only {} files",
        crate_.files.len()
    );
    let missing: Vec<String> = crate_
        .files
        .keys()
        .filter(|m| !m.is_empty() && !crate_.test_only.contains(*m) && unit_of(m).is_none())
        .map(|m| m.join("::"))
        .collect();
    assert!(missing.is_empty(), "modules without a layer: {missing:?}");
}

/// The check catches what it is meant to catch.
#[test]
fn the_checker_sees_upward_imports_in_every_form() {
    let crate_ = Crate::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let module: Vec<String> = vec!["state".into(), "inbox".into()];
    let code = strip_test_items(&strip(
        r#"
        use crate::daemon::run; // crate::cli in a comment is no import
        use crate::{event::Event, runtime::{Runtime, now_ms}};
        use super::super::platforms::Connector;
        fn f() { let s = "crate::cli::x"; crate::webhook::handle(s); }
        #[cfg(test)]
        mod tests { use crate::cli::Cli; }
        "#,
    ));
    let targets: BTreeSet<String> = crate_
        .references(&module, &code)
        .iter()
        .map(|t| t.join("::"))
        .collect();
    let expected: BTreeSet<String> = [
        "daemon::run",
        "event::Event",
        "runtime::Runtime",
        "runtime::now_ms",
        "platforms::Connector",
        "webhook::handle",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(targets, expected);
    let owner = crate_
        .owner(&["platforms".into(), "Connector".into()])
        .unwrap();
    assert_eq!(unit_of(&owner).unwrap().name, "platforms (connectors)");
    let owner = crate_
        .owner(&["platforms".into(), "PlatformKind".into()])
        .unwrap();
    assert_eq!(unit_of(&owner).unwrap().name, "platforms (catalogue)");
}

struct Unit {
    name: &'static str,
    layer: usize,
}

/// The unit of a module: the first pattern that matches it or one of its ancestors, the
/// longest match winning.
fn unit_of(module: &[String]) -> Option<Unit> {
    let mut best: Option<((usize, usize), Unit)> = None;
    for (layer, units) in LAYERS.iter().enumerate() {
        for (name, patterns) in units.iter() {
            for pattern in patterns.iter() {
                let parts: Vec<&str> = pattern.split("::").collect();
                let matches = parts.len() <= module.len()
                    && parts.iter().zip(module).all(|(p, m)| *p == "*" || p == m);
                // More segments win; then fewer wildcards.
                let rank = (parts.len(), parts.iter().filter(|p| **p != "*").count());
                if matches && best.as_ref().is_none_or(|(r, _)| rank > *r) {
                    best = Some((rank, Unit { name, layer }));
                }
            }
        }
    }
    best.map(|(_, unit)| unit)
}

struct File {
    path: PathBuf,
    /// The source without comments, string literals and test-only items.
    code: String,
}

struct Crate {
    /// Every module that is a file, by module path (`[]` is `lib.rs`).
    files: BTreeMap<Vec<String>, File>,
    /// Modules declared `#[cfg(test)]` or `test-support` only (and their children).
    test_only: BTreeSet<Vec<String>>,
    /// Names a module re-exports from one of its children: (module, name) → child.
    reexports: BTreeMap<(Vec<String>, String), Vec<String>>,
}

impl Crate {
    fn read(src: &Path) -> Crate {
        let mut files = BTreeMap::new();
        let mut test_only = BTreeSet::new();
        let mut reexports = BTreeMap::new();
        let mut stack = vec![src.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") || path.ends_with("main.rs") {
                    continue;
                }
                let module = module_of(src, &path);
                let raw = strip(&fs::read_to_string(&path).unwrap());
                for child in test_only_children(&raw) {
                    let mut m = module.clone();
                    m.push(child);
                    test_only.insert(m);
                }
                let code = strip_test_items(&raw);
                for (name, child) in child_reexports(&code) {
                    let mut m = module.clone();
                    m.push(child);
                    reexports.insert((module.clone(), name), m);
                }
                files.insert(module, File { path, code });
            }
        }
        // Children of test-only modules are test-only.
        let roots: Vec<Vec<String>> = test_only.iter().cloned().collect();
        for m in files.keys() {
            if roots.iter().any(|r| m.starts_with(r)) {
                test_only.insert(m.clone());
            }
        }
        Crate {
            files,
            test_only,
            reexports,
        }
    }

    /// Every `crate::` path `code` (of `module`) names, `super::` resolved, as segments after
    /// `crate`. Paths into `module` itself are left out.
    fn references(&self, module: &[String], code: &str) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for path in paths(code) {
            let mut segments: Vec<&str> = path.split("::").map(str::trim).collect();
            let mut base: Vec<String> = match segments.first() {
                Some(&"crate") => {
                    segments.remove(0);
                    Vec::new()
                }
                Some(first) if self.files.contains_key(&child_of(module, first)) => module.to_vec(),
                Some(&"super") => {
                    // `super` of a file module is its parent; `mod.rs` files are their module.
                    let mut base = module.to_vec();
                    while segments.first() == Some(&"super") {
                        segments.remove(0);
                        base.pop();
                    }
                    base
                }
                _ => continue,
            };
            base.extend(segments.iter().map(|s| (*s).to_owned()));
            if base.len() > module.len() + 1 && base.starts_with(module) {
                // A path into a child module (`freshdesk::webhook::parse` in `platforms`) is
                // checked like any other.
                out.push(base);
                continue;
            }
            if base.is_empty() || base.starts_with(module) && !module.is_empty() {
                continue;
            }
            out.push(base);
        }
        out
    }

    /// The file module that owns `path`: its longest prefix that is a file, or a child that
    /// file re-exports the next segment from.
    fn owner(&self, path: &[String]) -> Option<Vec<String>> {
        let mut owner = None;
        for len in (1..=path.len()).rev() {
            if self.files.contains_key(&path[..len]) {
                owner = Some(path[..len].to_vec());
                break;
            }
        }
        let owner = owner?;
        if let Some(next) = path.get(owner.len())
            && let Some(child) = self.reexports.get(&(owner.clone(), next.clone()))
        {
            return Some(child.clone());
        }
        Some(owner)
    }
}

/// `module::name`.
fn child_of(module: &[String], name: &str) -> Vec<String> {
    let mut child = module.to_vec();
    child.push(name.to_owned());
    child
}

/// `src/a/b.rs` → `[a, b]`; `src/a/mod.rs` → `[a]`; `src/lib.rs` → `[]`.
fn module_of(src: &Path, path: &Path) -> Vec<String> {
    let rel = path.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The source with comments and the contents of string and char literals removed (a literal
/// becomes `""`), so that neither can look like a path.
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            let mut depth = 0usize;
            while i < b.len() {
                if text[i..].starts_with("/*") {
                    depth += 1;
                    i += 2;
                } else if text[i..].starts_with("*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_start(rest) {
            let close = format!("\"{}", "#".repeat(hashes));
            let body = i + 2 + hashes;
            i = text[body..]
                .find(&close)
                .map_or(b.len(), |end| body + end + close.len());
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && char_literal_len(rest).is_some() {
            i += char_literal_len(rest).unwrap_or(1);
            out.push_str("' '");
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `r"`, `r#"`, `br"`… at the start of `s` (not inside an identifier): the number of `#`.
fn raw_string_start(s: &str) -> Option<usize> {
    let s = s.strip_prefix('b').unwrap_or(s);
    let s = s.strip_prefix('r')?;
    let hashes = s.bytes().take_while(|&c| c == b'#').count();
    (s.as_bytes().get(hashes) == Some(&b'"')).then_some(hashes)
}

/// The length of a char literal at the start of `s` (`'a'`, `'\n'`, `'\u{1F600}'`), `None` for
/// a lifetime.
fn char_literal_len(s: &str) -> Option<usize> {
    let mut chars = s.char_indices().skip(1);
    let (_, c) = chars.next()?;
    if c == '\\' {
        let end = s[1..].find('\'').map(|e| e + 1)?;
        let end2 = s[end + 1..].find('\'').map(|e| e + end + 1);
        // `'\''`: the first quote after the backslash is escaped.
        return Some(if s[1..].starts_with("\\'") {
            end2? + 1
        } else {
            end + 1
        });
    }
    let (i, close) = chars.next()?;
    (close == '\'').then_some(i + 1)
}

/// Whether the attribute starting at `attr` (`#[cfg(...)]`) makes its item test-only.
fn is_test_cfg(attr: &str) -> bool {
    let attr: String = attr.chars().filter(|c| !c.is_whitespace()).collect();
    attr.starts_with("#[cfg(test)]")
        || attr.starts_with("#[cfg(any(test,feature=\"\")")
        || attr.starts_with("#[cfg(feature=\"\")]")
}

/// The end (exclusive) of the `#[...]` attribute at the start of `s`.
fn attribute_end(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Children declared `#[cfg(test)] mod name;` (or for `test-support`).
fn test_only_children(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(found) = code[at..].find("#[cfg(") {
        let start = at + found;
        let Some(end) = attribute_end(&code[start..]).map(|e| start + e) else {
            break;
        };
        at = end;
        if !is_test_cfg(&code[start..end]) {
            continue;
        }
        let item = code[end..].trim_start();
        let item = ["pub(crate) ", "pub(super) ", "pub "]
            .iter()
            .find_map(|v| item.strip_prefix(v))
            .unwrap_or(item);
        if let Some(rest) = item.strip_prefix("mod ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if rest[name.len()..].trim_start().starts_with(';') {
                out.push(name);
            }
        }
    }
    out
}

/// `code` without test-only items: each `#[cfg(test)]` (or `test-support`) attribute and the
/// item after it, up to its closing brace or semicolon.
fn strip_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut at = 0;
    while let Some(found) = code[at..].find("#[cfg(") {
        let start = at + found;
        let Some(end) = attribute_end(&code[start..]).map(|e| start + e) else {
            break;
        };
        if !is_test_cfg(&code[start..end]) {
            out.push_str(&code[at..end]);
            at = end;
            continue;
        }
        out.push_str(&code[at..start]);
        let mut depth = 0usize;
        let mut stop = code.len();
        for (i, c) in code[end..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        stop = end + i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    stop = end + i + 1;
                    break;
                }
                _ => {}
            }
        }
        at = stop;
    }
    out.push_str(&code[at..]);
    out
}

/// Names re-exported from a child module: `pub use child::Name;`, `pub use child::{A, b::C};`.
fn child_reexports(code: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for stmt in code.split(';') {
        let stmt = stmt.trim();
        let Some(tree) = stmt.strip_prefix("pub use ") else {
            continue;
        };
        if tree.starts_with("crate::") || tree.starts_with("super::") || tree.starts_with("std::") {
            continue;
        }
        for path in expand(tree) {
            let segments: Vec<&str> = path.split("::").map(str::trim).collect();
            if let (Some(child), Some(name)) = (segments.first(), segments.last())
                && segments.len() >= 2
            {
                let name = name.rsplit('=').next().unwrap_or(name);
                out.push((name.to_owned(), (*child).to_owned()));
            }
        }
    }
    out
}

/// Every path starting with `crate::` or `super::` in `code`: `use` trees expanded, other
/// paths as written.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    // `use` statements (possibly `pub use`, `pub(crate) use`).
    let mut rest = code;
    while let Some(found) = find_word(rest, "use") {
        let after = &rest[found + 3..];
        let Some(end) = after.find(';') else { break };
        let tree = after[..end].trim();
        if tree.starts_with("crate::")
            || tree.starts_with("super::")
            || tree.starts_with("crate::{")
        {
            out.extend(expand(tree));
        }
        rest = &after[end..];
    }
    // Paths in expressions and types (`crate::a::b`, `super::x`, `child::item`; `Crate::references`
    // keeps the ones that name a module of this crate).
    let b = code.as_bytes();
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        if !is_ident(b[i]) || (i > 0 && (is_ident(b[i - 1]) || b[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let mut end = i;
        loop {
            while end < b.len() && is_ident(b[end]) {
                end += 1;
            }
            if code[end..].starts_with("::") && b.get(end + 2).is_some_and(|&c| is_ident(c)) {
                end += 2;
            } else {
                break;
            }
        }
        if code[i..end].contains("::") {
            out.push(code[i..end].to_owned());
        }
        i = end.max(i + 1);
    }
    out
}

/// The position of `word` as a whole word in `s`.
fn find_word(s: &str, word: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut at = 0;
    while let Some(found) = s[at..].find(word) {
        let i = at + found;
        let before = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        let after = b
            .get(i + word.len())
            .is_none_or(|c| c.is_ascii_whitespace());
        if before && after {
            return Some(i);
        }
        at = i + word.len();
    }
    None
}

/// Expands a `use` tree (`crate::a::{b, c::{d, e}}`) into its paths; `self` names the prefix.
fn expand(tree: &str) -> Vec<String> {
    // `a::B as C` keeps its path; whitespace goes.
    let tree: String = tree
        .split_whitespace()
        .map(|t| if t == "as" { "=" } else { t })
        .collect();
    let mut out = Vec::new();
    expand_into("", &tree, &mut out);
    out
}

fn expand_into(prefix: &str, tree: &str, out: &mut Vec<String>) {
    match tree.find('{') {
        None => {
            let tree = tree.split('=').next().unwrap_or(tree);
            let path = if tree == "self" {
                prefix.trim_end_matches("::").to_owned()
            } else {
                format!("{prefix}{tree}")
            };
            if !path.is_empty() && !path.ends_with('*') {
                out.push(path);
            }
        }
        Some(open) => {
            let head = format!("{prefix}{}", &tree[..open]);
            let inner = tree[open + 1..]
                .strip_suffix('}')
                .unwrap_or(&tree[open + 1..]);
            let mut depth = 0usize;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand_into(&head, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            if start < inner.len() {
                expand_into(&head, &inner[start..], out);
            }
        }
    }
}
