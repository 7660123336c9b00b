//! cargo +nightly fuzz run parse_plan_lower — any input: parse, lint, plan,
//! lower every stage; errors are fine, panics are bugs.
#![no_main]

use kiln_dockerfile::{lint::lint, lower, parse, plan, BaseImageConfig, PlanOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let Ok(df) = parse("Dockerfile", src) else { return };
    let _ = lint(&df);
    let opts = PlanOptions {
        target: None,
        build_args: vec![("A".into(), "1".into())],
        target_platform: "linux/amd64".into(),
        build_platform: "linux/amd64".into(),
    };
    let Ok(p) = plan(&df, &opts) else { return };
    let base = BaseImageConfig {
        env: vec!["PATH=/bin".into()],
        onbuild: vec!["RUN true".into()],
        ..Default::default()
    };
    for st in &p.stages {
        let _ = lower(&p, st.index, &base);
    }
});
