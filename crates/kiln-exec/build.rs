//! For a static musl build (the kiln image), the glibc-built static
//! libseccomp needs one glibc symbol that musl lacks: see shim/fortify.c.

fn main() {
    println!("cargo:rerun-if-changed=shim/fortify.c");
    if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("musl") {
        cc::Build::new()
            .file("shim/fortify.c")
            .compile("kiln_fortify_shim");
    }
}
