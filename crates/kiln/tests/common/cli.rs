//! Running the kiln CLI on a root: `kiln(root)`, then `ok` (must succeed)
//! or `fails` (must fail), each returning stdout and stderr together.

use std::path::Path;
use std::process::{Command, Output};

/// `kiln --root ROOT` (the binary cargo built for these tests).
pub fn kiln(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.arg("--root").arg(root);
    c
}

/// stdout then stderr, as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `c`, which must succeed.
pub fn ok(c: &mut Command) -> String {
    let o = c.output().expect("run kiln");
    assert!(o.status.success(), "{c:?} failed:\n{}", text(&o));
    text(&o)
}

/// Runs `c`, which must fail.
pub fn fails(c: &mut Command) -> String {
    let o = c.output().expect("run kiln");
    assert!(!o.status.success(), "{c:?} should fail:\n{}", text(&o));
    text(&o)
}

/// Disk use of a tree in bytes, as `du -s --block-size=1` reports it.
pub fn du(path: &Path) -> u64 {
    let o = Command::new("du")
        .args(["-s", "--block-size=1"])
        .arg(path)
        .output()
        .expect("run du");
    assert!(o.status.success(), "du {}: {}", path.display(), text(&o));
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du prints a number")
}
