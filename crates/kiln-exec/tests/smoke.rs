mod common;
use kiln_exec::Runtime;

#[test]
fn smoke_youki() {
    let Some(env) = common::setup(Runtime::Youki) else {
        return;
    };
    let out = env.sh("smoke", "echo hello; echo err >&2; exit 3");
    eprintln!("{:?} {:?} {:?}", out.stdout, out.stderr, out.result);
    env.assert_clean();
}

#[test]
fn smoke_runc() {
    let Some(env) = common::setup(Runtime::Runc) else {
        return;
    };
    let out = env.sh("smoke", "echo hello; echo err >&2; exit 3");
    eprintln!("{:?} {:?} {:?}", out.stdout, out.stderr, out.result);
    env.assert_clean();
}
