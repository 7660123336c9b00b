//! The hostile-layer cases of `apply_hostile.rs` again, with the user-space
//! path walk that replaces openat2 where the kernel or a seccomp profile
//! does not offer it.

#[path = "apply_hostile.rs"]
mod cases;

fn setup() {
    kiln_fs::apply::force_userspace_resolution();
}
