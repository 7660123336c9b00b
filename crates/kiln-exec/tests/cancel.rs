//! `cancel_all` (kiln's Ctrl-C handler) kills running containers of both
//! backends, cleans up, and refuses later runs. One test: it is sticky for
//! the whole test process.

mod common;

use std::fs;
use std::time::Duration;

use common::{exists, setup};
use kiln_exec::{cancel_all, Error, Runtime};

fn running(argv: &str) -> bool {
    let wanted = argv.replace(' ', "\0") + "\0";
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| fs::read(e.path().join("cmdline")).is_ok_and(|c| c == wanted.as_bytes()))
}

#[test]
fn cancel_all_kills_and_cleans_up() {
    let (Some(youki), Some(runc)) = (setup(Runtime::Youki), setup(Runtime::Runc)) else {
        return;
    };
    std::thread::scope(|s| {
        let a = s.spawn(|| youki.run(&youki.spec("c-youki", &["sleep", "1251"])));
        let b = s.spawn(|| runc.run(&runc.spec("c-runc", &["sleep", "1252"])));
        let mut waited = 0;
        while !(running("sleep 1251") && running("sleep 1252")) {
            std::thread::sleep(Duration::from_millis(20));
            waited += 1;
            assert!(waited < 500, "containers never started");
        }
        cancel_all();
        for out in [a.join().unwrap(), b.join().unwrap()] {
            assert!(
                matches!(out.result, Err(Error::Cancelled { .. })),
                "{:?}",
                out.result
            );
        }
    });
    assert!(!running("sleep 1251") && !running("sleep 1252"));
    for env in [&youki, &runc] {
        assert!(!exists(&env.rootfs().join("etc/resolv.conf")));
        env.assert_clean();
    }
    let later = youki.sh("after", "true");
    assert!(
        matches!(later.result, Err(Error::Cancelled { .. })),
        "{:?}",
        later.result
    );
    youki.assert_clean();
}
