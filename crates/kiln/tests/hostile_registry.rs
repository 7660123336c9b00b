//! `kiln pull` from a hostile registry (an in-test HTTP server on 127.0.0.1):
//! a huge Content-Length, an endless chunked body, a body that stalls, a
//! 1 byte/s trickle, a redirect to a dead port, a malformed token reply.
//! kiln must fail with an error naming the registry and what it was
//! reading, using little memory (peak RSS of the kiln process, read from
//! its /proc/<pid>/status). The timeouts are shortened through the
//! environment so the failures come quickly; nothing here asserts on time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

/// Generous: kiln pulling a small image peaks around 30 MB; before the
/// limits a hostile manifest took it past 1.2 GB.
const MAX_PEAK_KB: u64 = 250 * 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    HugeLength,
    EndlessChunked,
    StalledManifest,
    TrickleManifest,
    StalledBlob,
    TrickleBlob,
    RedirectToDeadPort(u16),
    MalformedToken,
    /// For pushes: accepts the upload, then never reads the body.
    SinkUpload,
    /// For pushes: the upload start answers 500 with an endless chunked
    /// body that begins with terminal escapes.
    UploadStartEndless,
    /// For pushes: every blob exists; the manifest PUT answers 400 with an
    /// endless body announced as 10 TB.
    ManifestPutHuge,
    /// For pushes: the upload start is never answered.
    UploadStartStalled,
}

impl Mode {
    fn is_push(self) -> bool {
        matches!(
            self,
            Mode::SinkUpload
                | Mode::UploadStartEndless
                | Mode::ManifestPutHuge
                | Mode::UploadStartStalled
        )
    }
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A valid image: config and one layer, so blob modes get past the manifest.
struct Image {
    manifest: Vec<u8>,
    config: Vec<u8>,
    layer: Vec<u8>,
}

fn image() -> Image {
    let layer = vec![7u8; 200_000];
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256(&layer), "size": layer.len()}],
    }))
    .unwrap();
    Image {
        manifest,
        config,
        layer,
    }
}

/// Serves `mode` on 127.0.0.1 until the test process ends.
fn serve(mode: Mode) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let img = Arc::new(image());
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            let img = img.clone();
            std::thread::spawn(move || {
                let _ = handle(sock, mode, port, &img);
            });
        }
    });
    port
}

fn handle(sock: TcpStream, mode: Mode, port: u16, img: &Image) -> std::io::Result<()> {
    let mut reader = BufReader::new(sock.try_clone()?);
    let mut out = sock;
    loop {
        let mut request = String::new();
        if reader.read_line(&mut request)? == 0 {
            return Ok(());
        }
        let mut auth = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("authorization:") {
                auth = line.clone();
            }
            if let Some(n) = lower.strip_prefix("content-length:") {
                length = n.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
        if mode == Mode::SinkUpload {
            sink_upload(&mut out, &request, &path)?;
            continue;
        }
        if mode.is_push() {
            // Take the request body (a manifest) before answering.
            std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink())?;
            hostile_push(&mut out, &request, &path, mode)?;
            continue;
        }
        respond(&mut out, &path, &auth, mode, port, img)?;
    }
}

fn reply(out: &mut TcpStream, status: &str, headers: &str, body: &[u8]) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )?;
    out.write_all(body)
}

fn respond(
    out: &mut TcpStream,
    path: &str,
    auth: &str,
    mode: Mode,
    port: u16,
    img: &Image,
) -> std::io::Result<()> {
    if mode == Mode::MalformedToken {
        if path.starts_with("/token") {
            return reply(out, "200 OK", "", b"<html>\x1b]0;owned\x07 not a token");
        }
        if auth.is_empty() {
            let challenge = format!(
                "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"x\"\r\n"
            );
            return reply(out, "401 Unauthorized", &challenge, b"{}");
        }
    }
    if path == "/v2/" {
        return reply(out, "200 OK", "", b"{}");
    }
    let is_manifest = path.contains("/manifests/");
    let manifest_type = "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n";
    match mode {
        Mode::HugeLength if is_manifest => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\n{manifest_type}Content-Length: 10000000000000\r\n\r\n"
            )?;
            endless(out, false)
        }
        Mode::EndlessChunked if is_manifest => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\n{manifest_type}Transfer-Encoding: chunked\r\n\r\n"
            )?;
            endless(out, true)
        }
        Mode::StalledManifest if is_manifest => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\n{manifest_type}Content-Length: 5000\r\n\r\n{{"
            )?;
            std::thread::sleep(Duration::from_secs(3600));
            Ok(())
        }
        Mode::TrickleManifest if is_manifest => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\n{manifest_type}Content-Length: 5000\r\n\r\n"
            )?;
            trickle(out)
        }
        _ if is_manifest => reply(out, "200 OK", manifest_type, &img.manifest),
        _ if path.ends_with(&sha256(&img.config)) => reply(out, "200 OK", "", &img.config),
        Mode::StalledBlob => {
            let len = img.layer.len();
            write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n")?;
            out.write_all(&img.layer[..1000])?;
            std::thread::sleep(Duration::from_secs(3600));
            Ok(())
        }
        Mode::TrickleBlob => {
            let len = img.layer.len();
            write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n")?;
            trickle(out)
        }
        Mode::RedirectToDeadPort(dead) => {
            let location = format!("Location: http://127.0.0.1:{dead}/storage/blob\r\n");
            reply(out, "307 Temporary Redirect", &location, b"")
        }
        _ => reply(out, "200 OK", "", &img.layer),
    }
}

fn sink_upload(out: &mut TcpStream, request: &str, path: &str) -> std::io::Result<()> {
    if path == "/v2/" {
        return reply(out, "200 OK", "", b"{}");
    }
    if request.starts_with("HEAD ") || request.starts_with("GET ") {
        return reply(out, "404 Not Found", "", b"");
    }
    if request.starts_with("POST ") {
        let location = "Location: /v2/sink/app/blobs/uploads/1\r\n";
        return reply(out, "202 Accepted", location, b"");
    }
    // The PUT of the blob: take nothing, answer nothing.
    std::thread::sleep(Duration::from_secs(3600));
    Ok(())
}

fn hostile_push(out: &mut TcpStream, request: &str, path: &str, mode: Mode) -> std::io::Result<()> {
    if path == "/v2/" {
        return reply(out, "200 OK", "", b"{}");
    }
    let blob_check = request.starts_with("HEAD ") && path.contains("/blobs/");
    match mode {
        Mode::ManifestPutHuge if blob_check => reply(out, "200 OK", "", b""),
        _ if blob_check => reply(out, "404 Not Found", "", b""),
        Mode::UploadStartEndless if request.starts_with("POST ") => {
            write!(
                out,
                "HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n"
            )?;
            let start = b"\x1b]0;owned\x07 upload failed";
            write!(out, "{:x}\r\n", start.len())?;
            out.write_all(start)?;
            out.write_all(b"\r\n")?;
            endless(out, true)
        }
        Mode::ManifestPutHuge if request.starts_with("PUT ") && path.contains("/manifests/") => {
            write!(
                out,
                "HTTP/1.1 400 Bad Request\r\nContent-Length: 10000000000000\r\n\r\n"
            )?;
            endless(out, false)
        }
        Mode::UploadStartStalled if request.starts_with("POST ") => {
            std::thread::sleep(Duration::from_secs(3600));
            Ok(())
        }
        _ => reply(out, "418 I'm a teapot", "", b"not expected here"),
    }
}

/// Sends data as fast as the client takes it, until it hangs up.
fn endless(out: &mut TcpStream, chunked: bool) -> std::io::Result<()> {
    let block = vec![b' '; 64 * 1024];
    loop {
        if chunked {
            write!(out, "{:x}\r\n", block.len())?;
            out.write_all(&block)?;
            out.write_all(b"\r\n")?;
        } else {
            out.write_all(&block)?;
        }
    }
}

fn trickle(out: &mut TcpStream) -> std::io::Result<()> {
    loop {
        out.write_all(b" ")?;
        // Often enough that the (shortened) idle timeout never fires.
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A port nothing listens on.
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The peak RSS (VmHWM) of a running process, in kB.
fn peak_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Outcome {
    success: bool,
    stderr: String,
    peak_kb: u64,
}

/// Runs `kiln pull` against `port` with short timeouts, watching its memory.
fn pull(root: &Path, port: u16) -> Outcome {
    run(
        root,
        &["pull", "-q", &format!("127.0.0.1:{port}/hostile/app:v1")],
    )
}

/// Runs kiln with `args` and short timeouts, watching its memory.
fn run(root: &Path, args: &[&str]) -> Outcome {
    run_with(root, args, &[])
}

/// [`run`] with more environment (`env` wins over the short timeouts).
fn run_with(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut child = Command::new(kiln_bin())
        .arg("--root")
        .arg(root)
        .args(args)
        .env("DOCKER_CONFIG", root.join("no-docker-config"))
        .env("KILN_REGISTRY_IDLE_TIMEOUT", "1")
        .env("KILN_REGISTRY_LOW_SPEED_TIME", "2")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let mut peak = 0;
    // Only a guard against a hang, so the test ends: far above the few
    // seconds the shortened timeouts and retries take.
    let guard = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(kb) = peak_kb(pid) {
            peak = peak.max(kb);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if peak > MAX_PEAK_KB {
            // Already failed; spare the machine the rest of the growth.
            let _ = child.kill();
            break child.wait().unwrap();
        }
        if Instant::now() > guard {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "kiln {args:?} still running after 300 s; stderr: {}",
                reader.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Outcome {
        success: status.success(),
        stderr: reader.join().unwrap(),
        peak_kb: peak,
    }
}

/// `what` failed, naming the registry at `port` and each of `wants`, with
/// kiln's peak memory under the bound.
fn assert_failed_in_bounds(mode: Mode, what: &str, port: u16, out: &Outcome, wants: &[&str]) {
    let err = &out.stderr;
    eprintln!("{mode:?}: peak {} kB; {}", out.peak_kb, err.trim());
    assert!(!out.success, "{mode:?}: {what} succeeded; stderr: {err}");
    assert!(
        err.contains(&format!("127.0.0.1:{port}")),
        "{mode:?}: the registry is not named: {err}"
    );
    for want in wants {
        assert!(err.contains(want), "{mode:?}: {want:?} missing from: {err}");
    }
    assert!(
        out.peak_kb > 0 && out.peak_kb < MAX_PEAK_KB,
        "{mode:?}: kiln peaked at {} kB (limit {MAX_PEAK_KB} kB); stderr: {err}",
        out.peak_kb
    );
}

fn check(mode: Mode, wants: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let port = serve(mode);
    let out = pull(tmp.path(), port);
    assert_failed_in_bounds(mode, "pull", port, &out, wants);
    // Nothing named: the store has no image.
    let index = std::fs::read_to_string(tmp.path().join("index.json")).unwrap_or_default();
    assert!(!index.contains("hostile"), "{mode:?}: {index}");
}

#[test]
fn a_huge_content_length_is_refused_at_once() {
    check(Mode::HugeLength, &["the manifest of", "larger than 4 MiB"]);
}

#[test]
fn an_endless_chunked_manifest_is_cut_at_the_limit() {
    check(
        Mode::EndlessChunked,
        &["the manifest of", "larger than 4 MiB"],
    );
}

#[test]
fn a_stalled_manifest_body_times_out() {
    check(Mode::StalledManifest, &["the manifest of", "idle timeout"]);
}

#[test]
fn a_trickling_manifest_hits_the_low_speed_limit() {
    check(
        Mode::TrickleManifest,
        &["the manifest of", "low-speed limit"],
    );
}

#[test]
fn a_stalled_blob_times_out_naming_the_blob() {
    let layer = sha256(&image().layer);
    check(
        Mode::StalledBlob,
        &[&format!("blob {layer}"), "idle timeout"],
    );
}

#[test]
fn a_trickling_blob_hits_the_low_speed_limit_naming_the_blob() {
    let layer = sha256(&image().layer);
    check(
        Mode::TrickleBlob,
        &[&format!("blob {layer}"), "low-speed limit"],
    );
}

#[test]
fn a_redirect_to_a_dead_port_blames_the_target() {
    let dead = dead_port();
    check(
        Mode::RedirectToDeadPort(dead),
        &[
            &format!("cannot reach 127.0.0.1:{dead}, where 127.0.0.1:"),
            "redirected",
            "connection refused",
        ],
    );
}

#[test]
fn a_malformed_token_reply_says_what_is_malformed() {
    let tmp = tempfile::tempdir().unwrap();
    let port = serve(Mode::MalformedToken);
    let out = pull(tmp.path(), port);
    assert!(!out.success);
    let err = out.stderr;
    assert!(err.contains("malformed reply"), "{err}");
    assert!(err.contains("not JSON"), "{err}");
    // The reply's escape bytes are shown escaped, never sent to the terminal.
    assert!(err.contains("<html>\\u{1b}]0;owned\\u{7}"), "{err}");
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    assert!(!err.contains("authentication failed"), "{err}");
}

#[test]
fn a_registry_that_stalls_uploads_is_given_up() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    // 32 MiB that gzip cannot shrink: more than the sockets buffer.
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut data = Vec::with_capacity(32 << 20);
    while data.len() < 32 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(rootfs.join("noise"), &data).unwrap();
    let out = Command::new(kiln_bin())
        .arg("--root")
        .arg(&root)
        .arg("import")
        .arg(&rootfs)
        .arg("big:1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = serve(Mode::SinkUpload);
    let dest = format!("127.0.0.1:{port}/sink/app:v1");
    let out = run(&root, &["push", "-q", "big:1", &dest]);
    let err = out.stderr;
    eprintln!("SinkUpload: peak {} kB; {}", out.peak_kb, err.trim());
    assert!(!out.success, "{err}");
    assert!(err.contains("the upload of blob sha256:"), "{err}");
    // The small config is all sent and never answered (idle timeout); the
    // big layer stops moving (low-speed limit): whichever comes first.
    assert!(
        err.contains("low-speed limit") || err.contains("no reply for 1.0 s after the last byte"),
        "{err}"
    );
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(out.peak_kb < MAX_PEAK_KB, "peak {} kB", out.peak_kb);
}

/// A root holding a small imported image `small:1`.
fn root_with_small_image(tmp: &Path) -> std::path::PathBuf {
    let root = tmp.join("root");
    let rootfs = tmp.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(rootfs.join("hello"), vec![b'h'; 100_000]).unwrap();
    let out = Command::new(kiln_bin())
        .arg("--root")
        .arg(&root)
        .arg("import")
        .arg(&rootfs)
        .arg("small:1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    root
}

/// Pushes `small:1` to a server in `mode`; the push must fail naming the
/// registry and each of `wants`, within the memory bound. `env` overrides
/// the short timeouts.
fn check_push(mode: Mode, env: &[(&str, &str)], wants: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let root = root_with_small_image(tmp.path());
    let port = serve(mode);
    let dest = format!("127.0.0.1:{port}/hostile/app:v1");
    let out = run_with(&root, &["push", "-q", "small:1", &dest], env);
    assert_failed_in_bounds(mode, "push", port, &out, wants);
    let err = out.stderr;
    // Escapes from the registry are shown escaped, never sent to the terminal.
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    err
}

// The endless bodies come with the default idle timeout: cutting them
// off must be kiln's size limit, not a timer.

#[test]
fn an_endless_error_body_to_the_upload_start_is_cut_short() {
    let err = check_push(
        Mode::UploadStartEndless,
        &[("KILN_REGISTRY_IDLE_TIMEOUT", "30")],
        &[
            "HTTP 500",
            "blob sha256:",
            "\\u{1b}]0;owned\\u{7} upload failed",
        ],
    );
    assert!(err.contains("the start of the upload of"), "{err}");
}

#[test]
fn a_huge_error_body_to_the_manifest_upload_is_cut_short() {
    check_push(
        Mode::ManifestPutHuge,
        &[("KILN_REGISTRY_IDLE_TIMEOUT", "30")],
        &["HTTP 400", "the manifest upload of", "hostile/app:v1"],
    );
}

#[test]
fn an_unanswered_upload_start_times_out_naming_the_blob() {
    check_push(
        Mode::UploadStartStalled,
        &[],
        &["the start of the upload of blob sha256:", "idle timeout"],
    );
}

/// The kiln under test; `KILN_TEST_BIN` points these tests at another build
/// (to show an older kiln fails them).
fn kiln_bin() -> String {
    std::env::var("KILN_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_kiln").to_string())
}
