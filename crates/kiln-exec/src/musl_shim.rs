//! In the static musl build (the kiln image), Debian's glibc-built
//! `libseccomp.a` calls `__fprintf_chk`, which `shim/fortify.c` defines.
//! libseccomp comes after kiln-exec on the linker's command line, so this
//! reference pulls the shim in first.

use std::ffi::{c_char, c_int, c_void};

extern "C" {
    fn __fprintf_chk(stream: *mut c_void, flag: c_int, format: *const c_char, ...) -> c_int;
}

#[used]
static KEEP: unsafe extern "C" fn(*mut c_void, c_int, *const c_char, ...) -> c_int = __fprintf_chk;
