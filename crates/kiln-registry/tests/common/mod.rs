//! Test helpers: images made by hand in a store, unique repository names,
//! a fake registry (for bearer auth and bad content) and a TCP proxy that
//! drops connections.
#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use kiln_oci::media_type as mt;
use kiln_oci::{Digest, Reference};
use kiln_store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A repository name no other test run uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "kiln-test/{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A small tar with one file whose content depends on `seed` (and is big
/// enough that a transfer spans many chunks).
pub fn layer_tar(seed: &str, size: usize) -> Vec<u8> {
    let mut content = Vec::with_capacity(size);
    let mut x: u64 = seed.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    while content.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Half random, half text: compresses some, not entirely.
        content.extend_from_slice(&x.to_le_bytes());
        content.extend_from_slice(b"kiln----");
    }
    content.truncate(size);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, format!("{seed}.bin"), &content[..])
        .unwrap();
    b.into_inner().unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comp {
    None,
    Gzip,
    Zstd,
}

pub fn compress(data: &[u8], c: Comp) -> Vec<u8> {
    match c {
        Comp::None => data.to_vec(),
        Comp::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Comp::Zstd => zstd::encode_all(data, 1).unwrap(),
    }
}

/// The blobs of a hand-made image: manifest bytes, config bytes, layers.
pub struct Made {
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub media_type: &'static str,
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
}

/// Builds an image for `arch` with one layer per entry of `layers`
/// (seed, compression): OCI media types when `oci`, else Docker schema 2.
pub fn make_image(arch: &str, layers: &[(&str, Comp)], oci: bool, layer_size: usize) -> Made {
    let mut blobs = Vec::new();
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    for (seed, c) in layers {
        let tar = layer_tar(seed, layer_size);
        diff_ids.push(Digest::sha256(&tar).to_string());
        let blob = compress(&tar, *c);
        let media_type = match (oci, c) {
            (true, Comp::None) => mt::OCI_LAYER,
            (true, Comp::Gzip) => mt::OCI_LAYER_GZIP,
            (true, Comp::Zstd) => mt::OCI_LAYER_ZSTD,
            (false, Comp::None) => mt::DOCKER_LAYER,
            (false, Comp::Gzip) => mt::DOCKER_LAYER_GZIP,
            (false, Comp::Zstd) => mt::DOCKER_LAYER_ZSTD,
        };
        descs.push(serde_json::json!({
            "mediaType": media_type, "size": blob.len(), "digest": Digest::sha256(&blob).to_string(),
        }));
        blobs.push(blob);
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [],
    }))
    .unwrap();
    let (media_type, config_type) = if oci {
        (mt::OCI_MANIFEST, mt::OCI_CONFIG)
    } else {
        (mt::DOCKER_MANIFEST, mt::DOCKER_CONFIG)
    };
    // Pretty-printed on purpose: a re-serialisation would change the digest.
    let manifest = serde_json::to_vec_pretty(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media_type,
        "config": {"mediaType": config_type, "size": config.len(), "digest": Digest::sha256(&config).to_string()},
        "layers": descs,
    }))
    .unwrap();
    Made {
        manifest_digest: Digest::sha256(&manifest),
        manifest,
        media_type,
        config,
        layers: blobs,
    }
}

/// Writes a made image into `store` under `name`.
pub fn store_image(store: &Store, name: &Reference, made: &Made) {
    store.write_blob(&made.config).unwrap();
    for l in &made.layers {
        store.write_blob(l).unwrap();
    }
    let d = store.write_blob(&made.manifest).unwrap();
    let desc = kiln_oci::oci_spec::image::Descriptor::new(
        made.media_type.into(),
        made.manifest.len() as u64,
        d.to_string()
            .parse::<kiln_oci::oci_spec::image::Digest>()
            .unwrap(),
    );
    store.tag(name, desc).unwrap();
}

/// Blob digests of an image's manifest: config then layers.
pub fn blob_digests(manifest: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    let mut out = vec![v["config"]["digest"].as_str().unwrap().to_string()];
    for l in v["layers"].as_array().unwrap() {
        out.push(l["digest"].as_str().unwrap().to_string());
    }
    out
}

/// Records progress events.
#[derive(Default)]
pub struct Events(pub Mutex<Vec<kiln_registry::Event>>);

impl kiln_registry::Progress for Events {
    fn event(&self, e: kiln_registry::Event) {
        self.0.lock().unwrap().push(e);
    }
}

impl Events {
    pub fn count(&self, f: impl Fn(&kiln_registry::Event) -> bool) -> usize {
        self.0.lock().unwrap().iter().filter(|e| f(e)).count()
    }
}

/// PUTs a manifest or index with curl (the registry on 127.0.0.1:5000).
pub fn put_manifest(repo: &str, tag: &str, media_type: &str, body: &[u8]) {
    let dir = kiln_testkit::tempdir();
    let f = dir.path().join("m.json");
    std::fs::write(&f, body).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-fsS", "-X", "PUT", "-H"])
        .arg(format!("Content-Type: {media_type}"))
        .arg("--data-binary")
        .arg(format!("@{}", f.display()))
        .arg(format!(
            "http://{}/v2/{repo}/manifests/{tag}",
            kiln_testkit::REGISTRY
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------- proxy

/// Forwards TCP connections to `target`, except that it closes the first
/// `drop_first` connections at once, and cuts the first connection that
/// fetches a blob after `cut_blob_after` response bytes (when set).
pub struct Proxy {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
}

pub async fn proxy(target: &str, drop_first: usize, cut_blob_after: Option<usize>) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let cut_done = Arc::new(AtomicUsize::new(0));
    let target = target.to_string();
    let conns = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let n = conns.fetch_add(1, Ordering::SeqCst);
            if n < drop_first {
                drop(client);
                continue;
            }
            let target = target.clone();
            let cut_done = cut_done.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&target).await else {
                    return;
                };
                forward(client, server, cut_blob_after, cut_done).await;
            });
        }
    });
    Proxy { addr, connections }
}

async fn forward(
    client: TcpStream,
    server: TcpStream,
    cut_blob_after: Option<usize>,
    cut_done: Arc<AtomicUsize>,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    // Bytes of the current blob response on this connection (None: the
    // current request is not a blob GET).
    let blob_bytes = Arc::new(Mutex::new(None::<usize>));
    let mark = blob_bytes.clone();
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let text = String::from_utf8_lossy(&buf[..n]);
            if text.starts_with("GET ") || text.starts_with("HEAD ") {
                *mark.lock().unwrap() = text.contains("/blobs/sha256:").then_some(0);
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match sr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut n = n;
        let mut stop = false;
        if let Some(limit) = cut_blob_after {
            if let Some(seen) = blob_bytes.lock().unwrap().as_mut() {
                // Cut the first blob response that grows past the limit.
                if *seen + n >= limit && cut_done.fetch_add(1, Ordering::SeqCst) == 0 {
                    n = limit - *seen;
                    stop = true;
                }
                *seen += n;
            }
        }
        if cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
        if stop {
            break;
        }
    }
    up.abort();
}

// ---------------------------------------------------------- fake registry

/// What the fake registry serves: path → (status, headers, body). Requests
/// to paths not listed get 404. With `bearer`, `/v2/...` requires
/// `Authorization: Bearer <token>`, and `/token` hands it out for the
/// basic credentials `user:pass`. Pushes are taken in (monolithic uploads
/// with their digest checked, manifests) and served back.
/// path, status, headers, body
pub type Route = (String, u16, Vec<(String, String)>, Vec<u8>);

#[derive(Clone, Default)]
pub struct FakeConfig {
    pub routes: Vec<Route>,
    pub bearer: Option<(String, String, String)>,
    pub v2_status: Option<u16>,
}

pub struct Fake {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<String>>>,
    pub pushed: Pushed,
}

/// What was pushed to a fake: path (`/v2/<repo>/blobs/<digest>`,
/// `/v2/<repo>/manifests/<tag>`) and body.
pub type Pushed = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

struct FakeState {
    config: FakeConfig,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    pushed: Pushed,
}

pub async fn fake_registry(config: FakeConfig) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(FakeState {
        config,
        addr,
        log: Arc::new(Mutex::new(Vec::new())),
        pushed: Arc::new(Mutex::new(Vec::new())),
    });
    let fake = Fake {
        addr,
        requests: state.log.clone(),
        pushed: state.pushed.clone(),
    };
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let _ = serve(sock, &state).await;
            });
        }
    });
    fake
}

/// One request as the fake sees it.
struct Request {
    method: String,
    /// The path and query.
    target: String,
    path: String,
    auth: String,
    body: Vec<u8>,
}

async fn serve(mut sock: TcpStream, state: &FakeState) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(&mut sock, &mut buf).await? else {
            return Ok(());
        };
        let line = format!("{} {}", req.method, req.target);
        state.log.lock().unwrap().push(line);
        let (status, extra, body) = respond(state, &req);
        let mut resp = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in &extra {
            resp.push_str(&format!("{k}: {v}\r\n"));
        }
        resp.push_str("\r\n");
        sock.write_all(resp.as_bytes()).await?;
        if req.method != "HEAD" {
            sock.write_all(&body).await?;
        }
    }
}

/// Reads one request (head and `Content-Length` body); `None` at the end.
async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<Request>> {
    let mut chunk = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    buf.drain(..head_end);
    let mut lines = head.lines();
    let mut parts = lines.next().unwrap_or("").split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let length: usize = header("content-length").parse().unwrap_or(0);
    while buf.len() < length {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf.drain(..length).collect();
    Ok(Some(Request {
        path: target.split('?').next().unwrap_or("").to_string(),
        method,
        target,
        auth: header("authorization"),
        body,
    }))
}

type Reply = (u16, Vec<(String, String)>, Vec<u8>);

fn respond(state: &FakeState, req: &Request) -> Reply {
    use base64::Engine;
    let (config, addr, path) = (&state.config, state.addr, req.path.as_str());
    if let Some((user, pass, token)) = &config.bearer {
        if path == "/token" {
            let want = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
            );
            return if req.auth == want {
                (
                    200,
                    vec![],
                    format!(r#"{{"token":"{token}"}}"#).into_bytes(),
                )
            } else {
                (401, vec![], b"{}".to_vec())
            };
        }
        if req.auth != format!("Bearer {token}") {
            let challenge =
                format!(r#"Bearer realm="http://{addr}/token",service="fake-registry""#);
            return (
                401,
                vec![("WWW-Authenticate".into(), challenge)],
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                    .to_vec(),
            );
        }
    }
    if path == "/v2/" || path == "/v2" {
        return (config.v2_status.unwrap_or(200), vec![], b"{}".to_vec());
    }
    if let Some(reply) = take_push(state, req) {
        return reply;
    }
    if let Some((_, body)) = state.pushed.lock().unwrap().iter().find(|(p, _)| p == path) {
        return (200, vec![], body.clone());
    }
    for (p, status, headers, body) in &config.routes {
        if p == path {
            return (*status, headers.clone(), body.clone());
        }
    }
    (
        404,
        vec![("Content-Type".into(), "application/json".into())],
        br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#.to_vec(),
    )
}

/// The steps of a push: POST starts an upload (its Location carries a
/// query, as docker distribution's does), PUT `?digest=` completes it, PUT
/// of a manifest stores it.
fn take_push(state: &FakeState, req: &Request) -> Option<Reply> {
    let repo_of = |marker: &str| req.path.strip_prefix("/v2/")?.split(marker).next();
    match req.method.as_str() {
        "POST" if req.path.ends_with("/blobs/uploads/") => {
            let repo = repo_of("/blobs/")?;
            let location = format!("/v2/{repo}/blobs/uploads/u1?_state=a%2Fb%3D");
            Some((202, vec![("Location".into(), location)], vec![]))
        }
        "PUT" if req.path.contains("/blobs/uploads/") => {
            let repo = repo_of("/blobs/")?;
            if !req.target.contains("_state=a%2Fb%3D&digest=") {
                let message = format!("upload state lost: {}", req.target);
                return Some((400, vec![], message.into_bytes()));
            }
            let digest = req.target.split("digest=").nth(1)?.replace("%3A", ":");
            if Digest::sha256(&req.body).to_string() != digest {
                return Some((
                    400,
                    vec![],
                    br#"{"errors":[{"code":"DIGEST_INVALID"}]}"#.to_vec(),
                ));
            }
            let path = format!("/v2/{repo}/blobs/{digest}");
            state.pushed.lock().unwrap().push((path, req.body.clone()));
            Some((201, vec![], vec![]))
        }
        "PUT" if req.path.contains("/manifests/") => {
            let entry = (req.path.clone(), req.body.clone());
            state.pushed.lock().unwrap().push(entry);
            Some((201, vec![], vec![]))
        }
        _ => None,
    }
}

/// Routes serving `made` as `repo:tag`, with blob `wrong` (if any) served
/// with other content than its digest says.
pub fn routes_for(repo: &str, tag: &str, made: &Made, corrupt: Option<usize>) -> FakeConfig {
    let mut routes = vec![(
        format!("/v2/{repo}/manifests/{tag}"),
        200,
        vec![("Content-Type".to_string(), made.media_type.to_string())],
        made.manifest.clone(),
    )];
    let mut blobs = vec![made.config.clone()];
    blobs.extend(made.layers.iter().cloned());
    for (i, b) in blobs.iter().enumerate() {
        let mut body = b.clone();
        if corrupt == Some(i) {
            let last = body.len() - 1;
            body[last] ^= 0xff;
        }
        routes.push((
            format!("/v2/{repo}/blobs/{}", Digest::sha256(b)),
            200,
            vec![],
            body,
        ));
    }
    FakeConfig {
        routes,
        ..FakeConfig::default()
    }
}
