//! Against a fake registry: the bearer-token flow (challenge, token from the
//! realm with basic credentials, requests with the token) for pulls and
//! pushes, content whose digest does not match, unknown media types, a
//! registry that refuses.

mod common;

use common::*;
use kiln_oci::{Platform, Reference};
use kiln_registry::{Client, ClientOptions, Error, NoProgress};
use kiln_store::Store;

fn amd64() -> Platform {
    Platform::parse("linux/amd64").unwrap()
}

fn config_with(dir: &std::path::Path, registry: &str, user: &str, pass: &str) -> Client {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        serde_json::json!({"auths": {registry: {"auth": auth}}}).to_string(),
    )
    .unwrap();
    Client::new(ClientOptions {
        docker_config: Some(path),
        ..ClientOptions::default()
    })
}

#[tokio::test]
async fn bearer_token_flow_pulls_and_logs_in() {
    let made = make_image("amd64", &[("bearer", Comp::Gzip)], true, 10_000);
    let mut cfg = routes_for("app", "v1", &made, None);
    cfg.bearer = Some(("alice".into(), "pw".into(), "tok-123".into()));
    let fake = fake_registry(cfg).await;
    let registry = fake.addr.to_string();
    let reference = Reference::parse(&format!("{registry}/app:v1")).unwrap();
    let tmp = kiln_testkit::tempdir();

    // Right credentials: a token is fetched and used.
    let client = config_with(tmp.path(), &registry, "alice", "pw");
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let pulled = client
        .pull(&store, &reference, &amd64(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, made.manifest_digest);
    let log = fake.requests.lock().unwrap().clone();
    assert!(log.iter().any(|r| r.starts_with("GET /token")), "{log:?}");

    // Wrong credentials: the token service says no, the pull fails clearly.
    let client = config_with(tmp.path(), &registry, "alice", "nope");
    let store = Store::open(&tmp.path().join("store2")).unwrap();
    let e = client
        .pull(&store, &reference, &amd64(), &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("authentication failed for {registry}: check `kiln login`")
    );
    assert!(store.list().unwrap().is_empty());

    // Login checks against the token service before storing.
    let client = Client::new(ClientOptions {
        docker_config: Some(tmp.path().join("login.json")),
        ..ClientOptions::default()
    });
    let e = client.login(&registry, "alice", "nope").await.unwrap_err();
    assert!(
        e.to_string().contains("incorrect username or password"),
        "{e}"
    );
    assert!(!tmp.path().join("login.json").exists());
    client.login(&registry, "alice", "pw").await.unwrap();
    assert!(tmp.path().join("login.json").exists());
}

#[tokio::test]
async fn bearer_token_flow_pushes_with_a_push_scope() {
    let made = make_image("amd64", &[("push", Comp::Gzip)], true, 300_000);
    let fake = fake_registry(FakeConfig {
        bearer: Some(("alice".into(), "pw".into(), "tok-9".into())),
        ..FakeConfig::default()
    })
    .await;
    let registry = fake.addr.to_string();
    let remote = Reference::parse(&format!("{registry}/team/app:v1")).unwrap();
    let tmp = kiln_testkit::tempdir();
    let store = Store::open(&tmp.path().join("src")).unwrap();
    store_image(&store, &remote, &made);

    let client = config_with(tmp.path(), &registry, "alice", "pw");
    let pushed = client
        .push(&store, &remote, &remote, &NoProgress)
        .await
        .unwrap();
    assert_eq!(pushed, made.manifest_digest);
    let log = fake.requests.lock().unwrap().clone();
    let scope = "scope=repository%3Ateam%2Fapp%3Apull%2Cpush";
    assert!(
        log.iter()
            .any(|r| r.starts_with("GET /token") && r.contains(scope)),
        "{log:?}"
    );
    // Byte for byte: pulled back through the same registry.
    let dst = Store::open(&tmp.path().join("dst")).unwrap();
    let pulled = client
        .pull(&dst, &remote, &amd64(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, made.manifest_digest);
    assert_eq!(dst.read_blob(&made.manifest_digest).unwrap(), made.manifest);
    assert!(dst.fsck().unwrap().is_clean());

    // To another repository: the token covers the mount source too; this
    // registry cannot mount and starts uploads instead, which are used.
    let other = Reference::parse(&format!("{registry}/team/copy:v1")).unwrap();
    client
        .push(&store, &remote, &other, &NoProgress)
        .await
        .unwrap();
    let log = fake.requests.lock().unwrap().clone();
    let both = "scope=repository%3Ateam%2Fcopy%3Apull%2Cpush&scope=repository%3Ateam%2Fapp%3Apull";
    assert!(log.iter().any(|r| r.contains(both)), "{log:?}");
    let starts = log
        .iter()
        .filter(|r| r.starts_with("POST /v2/team/copy/blobs/uploads/"))
        .count();
    let blobs = blob_digests(&made.manifest).len();
    assert_eq!(starts, blobs, "one POST (the mount) per blob: {log:?}");
    let copied = fake.pushed.lock().unwrap().clone();
    assert!(copied
        .iter()
        .any(|(p, body)| p == "/v2/team/copy/manifests/v1" && *body == made.manifest));

    // Wrong credentials: refused by the token service, nothing pushed.
    let client = config_with(tmp.path(), &registry, "alice", "nope");
    let before = fake.pushed.lock().unwrap().len();
    let e = client
        .push(&store, &remote, &remote, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("authentication failed for {registry}: check `kiln login`")
    );
    assert_eq!(fake.pushed.lock().unwrap().len(), before);
}

#[tokio::test]
async fn a_blob_with_the_wrong_content_is_not_committed() {
    let made = make_image("amd64", &[("bad", Comp::Gzip)], false, 10_000);
    // Blob 1 is the layer.
    let fake = fake_registry(routes_for("app", "v1", &made, Some(1))).await;
    let reference = Reference::parse(&format!("{}/app:v1", fake.addr)).unwrap();
    let tmp = kiln_testkit::tempdir();
    let store = Store::open(tmp.path()).unwrap();
    let client = Client::new(ClientOptions::default());
    let e = client
        .pull(&store, &reference, &amd64(), &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    let layer = kiln_oci::Digest::sha256(&made.layers[0]);
    assert!(e.to_string().contains(&layer.to_string()), "{e}");
    assert!(!store.has_blob(&layer));
    assert!(store.list().unwrap().is_empty());
    // Not retried: a mismatch is not a network failure.
    let log = fake.requests.lock().unwrap().clone();
    let fetches = log
        .iter()
        .filter(|r| r.contains(&layer.to_string()))
        .count();
    assert_eq!(fetches, 1, "{log:?}");
}

#[tokio::test]
async fn unknown_media_types_are_refused() {
    let mut made = make_image("amd64", &[("odd", Comp::Gzip)], true, 1_000);
    let text = String::from_utf8(made.manifest.clone()).unwrap().replace(
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.example.weird",
    );
    made.manifest = text.into_bytes();
    let fake = fake_registry(routes_for("app", "v1", &made, None)).await;
    let reference = Reference::parse(&format!("{}/app:v1", fake.addr)).unwrap();
    let tmp = kiln_testkit::tempdir();
    let store = Store::open(tmp.path()).unwrap();
    let e = Client::new(ClientOptions::default())
        .pull(&store, &reference, &amd64(), &NoProgress)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("application/vnd.example.weird"),
        "{e}"
    );
    assert!(store.list().unwrap().is_empty());
}

#[tokio::test]
async fn a_refusing_registry_is_named() {
    let fake = fake_registry(FakeConfig {
        v2_status: Some(403),
        ..FakeConfig::default()
    })
    .await;
    let reference = Reference::parse(&format!("{}/app:v1", fake.addr)).unwrap();
    let tmp = kiln_testkit::tempdir();
    let store = Store::open(tmp.path()).unwrap();
    let e = Client::new(ClientOptions::default())
        .pull(&store, &reference, &amd64(), &NoProgress)
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(&fake.addr.to_string()) && text.contains("403"),
        "{text}"
    );

    // A manifest the registry does not have.
    let fake = fake_registry(FakeConfig::default()).await;
    let reference = Reference::parse(&format!("{}/app:v1", fake.addr)).unwrap();
    let e = Client::new(ClientOptions::default())
        .pull(&store, &reference, &amd64(), &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ManifestUnknown { .. }), "{e}");
}
