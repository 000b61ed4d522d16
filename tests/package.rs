//! The Debian package (`cargo deb`, docs/packaging.md): built with the `deb-test` profile and
//! inspected with `dpkg-deb` — control data, every path and mode, conffiles, the maintainer
//! scripts (syntax, and what they do when run against recording stand-ins) — and its binary run
//! from an extraction. Nothing is installed on this machine.
//!
//! A test binary of its own, so that its build of the package never competes for the CPU with
//! the daemon tests of `tests/integration` (cargo runs test binaries one after another).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the point

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NAME: &str = "supportopsd";

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} could not start: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).unwrap()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Whether the tools are here. Under CI (`CI` set) they must be: `.ci/run` installs them.
fn tools_present() -> bool {
    let missing: Vec<&str> = [
        (
            "cargo-deb",
            Command::new(cargo()).args(["deb", "--version"]).output(),
        ),
        (
            "dpkg-deb",
            Command::new("dpkg-deb").arg("--version").output(),
        ),
        ("readelf", Command::new("readelf").arg("--version").output()),
    ]
    .into_iter()
    .filter(|(_, out)| !out.as_ref().is_ok_and(|o| o.status.success()))
    .map(|(name, _)| name)
    .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "the package test needs {} (cargo install cargo-deb --locked; apt-get install dpkg-dev)",
        missing.join(", ")
    );
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("{why}: skipped");
    false
}

/// One entry of `dpkg-deb --contents`: mode string, owner, path (without the leading `.`).
struct Entry {
    mode: String,
    owner: String,
}

fn contents(deb: &Path) -> BTreeMap<String, Entry> {
    let listing = stdout(Command::new("dpkg-deb").arg("--contents").arg(deb));
    listing
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // drwxr-xr-x root/root 0 2026-12-06 16:40 ./usr/bin/
            let path = fields[5].trim_start_matches('.').trim_end_matches('/');
            (
                path.to_string(),
                Entry {
                    mode: fields[0].to_string(),
                    owner: fields[1].to_string(),
                },
            )
        })
        .collect()
}

fn field(deb: &Path, name: &str) -> String {
    stdout(Command::new("dpkg-deb").arg("--field").arg(deb).arg(name))
        .trim()
        .to_string()
}

/// Runs a maintainer script with `PATH` holding only stand-ins that record their arguments
/// (`getent` finds nothing, so the user and group are "missing"); returns the record.
fn run_script(script: &Path, args: &[&str]) -> (bool, String) {
    let bin = tempfile::tempdir().unwrap();
    let log = bin.path().join("calls.log");
    for tool in [
        "getent",
        "groupadd",
        "useradd",
        "install",
        "chmod",
        "chown",
        "systemctl",
        "rm",
        "mkdir",
        "adduser",
        "addgroup",
        "deb-systemd-helper",
        "deb-systemd-invoke",
    ] {
        let path = bin.path().join(tool);
        let exit = if tool == "getent" { 2 } else { 0 };
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"{tool} $*\" >> '{}'\nexit {exit}\n",
                log.display()
            ),
        )
        .unwrap();
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&path, perms).unwrap();
    }
    let out = Command::new("/bin/sh")
        .arg(script)
        .args(args)
        .env_clear()
        .env("PATH", bin.path())
        .output()
        .unwrap();
    (
        out.status.success(),
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

#[test]
fn the_debian_package_installs_what_docs_packaging_md_says() {
    if !tools_present() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = tempfile::tempdir().unwrap();
    run(Command::new(cargo())
        .current_dir(root)
        // --fast: lighter compression; the contents are the same.
        .args([
            "deb",
            "--locked",
            "--fast",
            "--profile",
            "deb-test",
            "--output",
        ])
        .arg(out_dir.path()));
    let debs: Vec<PathBuf> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "one package: {debs:?}");
    let deb = &debs[0];

    // Control data.
    assert_eq!(field(deb, "Package"), NAME);
    assert_eq!(field(deb, "Version"), env!("CARGO_PKG_VERSION"));
    let depends = field(deb, "Depends");
    for dep in ["libc6", "zlib1g", "passwd"] {
        assert!(
            depends.split(',').any(|d| d.trim().starts_with(dep)),
            "Depends has {dep}: {depends}"
        );
    }
    assert_eq!(field(deb, "Recommends"), "git");

    // Every path, its mode and owner.
    let files = contents(deb);
    let want = [
        ("/usr/bin/supportopsd", "-rwxr-xr-x"),
        ("/usr/lib/systemd/system/supportopsd.service", "-rw-r--r--"),
        (
            "/usr/lib/systemd/system/supportopsd.service.d/package.conf",
            "-rw-r--r--",
        ),
        (
            "/usr/lib/systemd/system/supportopsd-backup.service",
            "-rw-r--r--",
        ),
        (
            "/usr/lib/systemd/system/supportopsd-backup.timer",
            "-rw-r--r--",
        ),
        ("/etc/supportopsd/supportopsd.env", "-rw-------"),
        ("/etc/supportopsd/policy.toml", "-rw-------"),
        ("/usr/share/doc/supportopsd/README.md", "-rw-r--r--"),
        ("/usr/share/doc/supportopsd/CHANGELOG.md", "-rw-r--r--"),
        ("/usr/share/doc/supportopsd/packaging.md", "-rw-r--r--"),
        ("/usr/share/doc/supportopsd/copyright", "-rw-r--r--"),
    ];
    for (path, mode) in want {
        let entry = files
            .get(path)
            .unwrap_or_else(|| panic!("{path} is in the package"));
        assert_eq!(entry.mode, mode, "{path}");
    }
    let debug_files: Vec<&String> = files
        .keys()
        .filter(|p| p.starts_with("/usr/lib/debug/.build-id/") && p.ends_with(".debug"))
        .collect();
    assert_eq!(debug_files.len(), 1, "one debug file: {debug_files:?}");
    for (path, entry) in &files {
        assert!(
            entry.owner == "root/root" || entry.owner == "0/0",
            "{path} belongs to root: {}",
            entry.owner
        );
        let known = want.iter().any(|(w, _)| w == path)
            || path == debug_files[0]
            || (entry.mode.starts_with('d')
                && ["/usr", "/etc/supportopsd", "/etc"]
                    .iter()
                    .any(|prefix| path.starts_with(prefix)))
            || path.is_empty();
        assert!(known, "unexpected {} {path}", entry.mode);
    }

    // The control archive: conffiles and maintainer scripts.
    let control = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("--control")
        .arg(deb)
        .arg(control.path().join("DEBIAN")));
    let ctl = control.path().join("DEBIAN");
    let conffiles = std::fs::read_to_string(ctl.join("conffiles")).unwrap();
    let mut conffiles: Vec<&str> = conffiles.lines().collect();
    conffiles.sort_unstable();
    assert_eq!(
        conffiles,
        [
            "/etc/supportopsd/policy.toml",
            "/etc/supportopsd/supportopsd.env"
        ]
    );
    for script in ["postinst", "prerm", "postrm"] {
        let path = ctl.join(script);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o755, "{script} is executable");
        run(Command::new("sh").arg("-n").arg(&path));
        let text = std::fs::read_to_string(&path).unwrap();
        // Never enabled or started by the package: it needs configuration first.
        // (Comments and messages aside: postinst tells the operator how to enable it.)
        for line in text.lines().filter(|l| {
            let l = l.trim_start();
            !l.starts_with('#') && !l.starts_with("echo ")
        }) {
            assert!(
                !line.contains("systemctl enable")
                    && !line.contains("systemctl start")
                    && !line.contains("--now")
                    && !line.contains("deb-systemd-invoke start"),
                "{script} enables or starts a unit: {line}"
            );
        }
        let (ok, _) = run_script(&path, &["no-such-action"]);
        assert!(!ok, "{script} refuses an argument it does not know");
    }
    assert!(!ctl.join("preinst").exists());

    // postinst on a fresh install: the group, the user, the directories.
    let (ok, calls) = run_script(&ctl.join("postinst"), &["configure", ""]);
    assert!(ok, "postinst configure: {calls}");
    assert!(calls.contains("groupadd --system supportopsd\n"), "{calls}");
    assert!(
        calls.contains("useradd --system --gid supportopsd --home-dir /var/lib/supportopsd --no-create-home --shell /usr/sbin/nologin"),
        "{calls}"
    );
    assert!(calls.contains("chmod 0700 /etc/supportopsd\n"), "{calls}");
    if !Path::new("/var/lib/supportopsd").exists() {
        assert!(
            calls.contains(
                "install -d -o supportopsd -g supportopsd -m 0700 /var/lib/supportopsd\n"
            ),
            "{calls}"
        );
    }
    if !Path::new("/var/backups/supportopsd").exists() {
        assert!(
            calls.contains("install -d -o root -g root -m 0700 /var/backups/supportopsd\n"),
            "{calls}"
        );
    }
    assert!(!calls.contains("systemctl enable") && !calls.contains("systemctl start"));
    // On an upgrade a running daemon is restarted (only where systemd runs: postinst asks
    // systemd only then), and a stopped one is left stopped.
    let (ok, calls) = run_script(&ctl.join("postinst"), &["configure", "0.0.1"]);
    assert!(ok, "{calls}");
    if Path::new("/run/systemd/system").is_dir() {
        assert!(
            calls.contains("systemctl try-restart supportopsd.service"),
            "{calls}"
        );
    }
    assert!(!calls.contains("systemctl start") && !calls.contains("systemctl restart"));
    // prerm: stops on removal, not on an upgrade.
    let (ok, calls) = run_script(&ctl.join("prerm"), &["upgrade", "0.2.0"]);
    assert!(ok && !calls.contains("systemctl"), "{calls}");
    let (ok, calls) = run_script(&ctl.join("prerm"), &["remove"]);
    assert!(ok, "{calls}");
    if Path::new("/run/systemd/system").is_dir() {
        assert!(
            calls.contains("systemctl stop supportopsd-backup.timer supportopsd.service"),
            "{calls}"
        );
    }
    // postrm purge: enablement forgotten; the state, backups, key and user kept.
    let (ok, calls) = run_script(&ctl.join("postrm"), &["purge"]);
    assert!(ok, "{calls}");
    assert!(
        calls.contains("rm -f /etc/systemd/system/multi-user.target.wants/supportopsd.service /etc/systemd/system/timers.target.wants/supportopsd-backup.timer"),
        "{calls}"
    );
    assert!(
        !calls.contains("/var/lib/supportopsd")
            && !calls.contains("/var/backups")
            && !calls.contains("userdel")
            && !calls.contains("supportopsd.key"),
        "{calls}"
    );
    let (ok, calls) = run_script(&ctl.join("postrm"), &["remove"]);
    assert!(ok && !calls.contains("rm "), "{calls}");

    // The extracted files: the drop-in, the binary (stripped, its debug info found by build id).
    let tree = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(tree.path()));
    let dropin = std::fs::read_to_string(
        tree.path()
            .join("usr/lib/systemd/system/supportopsd.service.d/package.conf"),
    )
    .unwrap();
    for line in [
        "ExecStart=\nExecStart=/usr/bin/supportopsd ",
        "ExecReload=\nExecReload=/usr/bin/supportopsd sync",
        "DynamicUser=no",
        "User=supportopsd",
        "Group=supportopsd",
    ] {
        assert!(dropin.contains(line), "the drop-in has {line:?}");
    }
    let unit = std::fs::read_to_string(
        tree.path()
            .join("usr/lib/systemd/system/supportopsd.service"),
    )
    .unwrap();
    for credential in [
        "LoadCredential=supportopsd.key:/etc/supportopsd/supportopsd.key",
        "LoadCredential=policy.toml:/etc/supportopsd/policy.toml",
        "EnvironmentFile=-/etc/supportopsd/supportopsd.env",
    ] {
        assert!(unit.contains(credential), "the unit reads {credential}");
    }
    assert_eq!(
        std::fs::read(tree.path().join("etc/supportopsd/policy.toml")).unwrap(),
        std::fs::read(root.join("systemd/policy.toml.example")).unwrap()
    );

    let bin = tree.path().join("usr/bin/supportopsd");
    let sections = stdout(Command::new("readelf").args(["-S", "-W"]).arg(&bin));
    // (`.debug_gdb_scripts` is a loaded section naming gdb's pretty-printers, not debug info.)
    for dwarf in [".debug_info", ".debug_line", ".debug_str", ".debug_abbrev"] {
        assert!(
            !sections.contains(dwarf),
            "the binary is stripped of debug info ({dwarf}):\n{sections}"
        );
    }
    assert!(sections.contains(".gnu_debuglink"), "{sections}");
    let notes = stdout(Command::new("readelf").arg("-n").arg(&bin));
    let build_id = notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .unwrap_or_else(|| panic!("a build id: {notes}"))
        .trim();
    let debug_path = format!(
        "/usr/lib/debug/.build-id/{}/{}.debug",
        &build_id[..2],
        &build_id[2..]
    );
    assert_eq!(
        debug_files[0], &debug_path,
        "the debug file is named by build id"
    );
    let debug_sections = stdout(
        Command::new("readelf")
            .args(["-S", "-W"])
            .arg(tree.path().join(debug_path.trim_start_matches('/'))),
    );
    assert!(
        debug_sections.contains(".debug_line"),
        "the debug file has line tables:\n{debug_sections}"
    );

    let version = stdout(Command::new(&bin).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("supportopsd {}", env!("CARGO_PKG_VERSION"))
    );
    let validate = Command::new(&bin)
        .arg("--repo")
        .arg(root.join("examples/repo"))
        .arg("validate")
        .env_remove("SUPPORTOPSD_PATH")
        .output()
        .unwrap();
    assert!(
        validate.status.success(),
        "validate examples/repo with the packaged binary: {}{}",
        String::from_utf8_lossy(&validate.stdout),
        String::from_utf8_lossy(&validate.stderr)
    );
}
