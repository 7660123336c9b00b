//! Per-container start overhead of each backend: runs `true` repeatedly and
//! prints the mean wall time per run (prepare, helper, create, start, wait,
//! delete, cleanup) and the CPU time all processes involved used (which a
//! busy machine distorts less than wall time). Prints, asserts nothing:
//! `sudo cargo bench -p kiln-exec --bench start_overhead`

#[path = "../tests/common/mod.rs"]
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
    let cpu_before = cpu_ms();
    let start = Instant::now();
    for i in 0..n {
        env.run(&env.spec(&format!("b{i}"), &["true"])).ok();
    }
    let per = start.elapsed().as_secs_f64() * 1000.0 / n as f64;
    let cpu = (cpu_ms() - cpu_before) / n as f64;
    println!(
        "{runtime:?}: {per:.1} ms wall, {cpu:.1} ms CPU per container \
         (mean of {n} sequential runs of `true`)"
    );
    env.assert_clean();
}

/// User + system CPU time of this process and its reaped descendants.
fn cpu_ms() -> f64 {
    let mut total = 0.0;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: getrusage fills the struct.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        for t in [u.ru_utime, u.ru_stime] {
            total += t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
        }
    }
    total
}

fn main() {
    bench(Runtime::Youki);
    bench(Runtime::Runc);
}
