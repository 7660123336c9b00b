//! Stand-alone container helper for kiln-exec's tests and benchmarks: the
//! same code path the `kiln` binary takes when re-executed as a helper.

fn main() {
    kiln_exec::helper::run_if_helper();
    eprintln!("kiln-exec-helper: not started as a container helper");
    std::process::exit(2);
}
