//! Per-container start overhead of each backend: runs `true` repeatedly and
//! prints the mean wall time per run (prepare, helper, create, start, wait,
//! delete, cleanup). Prints, asserts nothing:
//! `cargo test -p kiln-exec --release --test bench -- --ignored --nocapture`

mod common;

use std::time::Instant;

use kiln_exec::Runtime;

fn bench(runtime: Runtime) {
    let Some(env) = common::setup(runtime.clone()) else {
        return;
    };
    // Warm up page cache and the helper binary.
    env.sh("warm", "true").ok();
    let n = 30;
    let start = Instant::now();
    for i in 0..n {
        env.run(&env.spec(&format!("b{i}"), &["true"])).ok();
    }
    let per = start.elapsed().as_secs_f64() * 1000.0 / n as f64;
    println!("{runtime:?}: {per:.1} ms per container (mean of {n} sequential runs of `true`)");
    env.assert_clean();
}

#[test]
#[ignore = "benchmark: prints timings"]
fn start_overhead() {
    bench(Runtime::Youki);
    bench(Runtime::Runc);
}
