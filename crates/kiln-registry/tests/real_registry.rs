//! Against the real CNCF registries on 127.0.0.1:5000 (open) and :5001
//! (htpasswd): push → pull round trips keep every digest, basic auth from a
//! Docker config written by login, platform selection from an index, zstd
//! and uncompressed layers, dropped connections retried, blobs not uploaded
//! twice and mounted across repositories.

mod common;

use common::*;
use kiln_oci::{media_type as mt, Digest, Platform, Reference};
use kiln_registry::{Client, ClientOptions, Error, Event, NoProgress};
use kiln_store::Store;
use kiln_testkit::{require_registries, AUTH_PASSWORD, AUTH_REGISTRY, AUTH_USER, REGISTRY};

fn client_with_config(dir: &std::path::Path) -> Client {
    Client::new(ClientOptions {
        docker_config: Some(dir.join("config.json")),
        ..ClientOptions::default()
    })
}

fn amd64() -> Platform {
    Platform::parse("linux/amd64").unwrap()
}

/// Pushes `made` from a fresh store as `remote`, pulls it into another fresh
/// store and checks both sides have the same bytes.
async fn round_trip(client: &Client, made: &Made, remote: &Reference) {
    let tmp = kiln_testkit::tempdir();
    let src = Store::open(&tmp.path().join("src")).unwrap();
    store_image(&src, remote, made);
    let pushed = client
        .push(&src, remote, remote, &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        pushed, made.manifest_digest,
        "push keeps the manifest digest"
    );

    let dst = Store::open(&tmp.path().join("dst")).unwrap();
    let pulled = client
        .pull(&dst, remote, &amd64(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, made.manifest_digest);
    assert_eq!(pulled.media_type, made.media_type);
    assert_eq!(dst.read_blob(&made.manifest_digest).unwrap(), made.manifest);
    let digests = blob_digests(&made.manifest);
    assert_eq!(pulled.config_digest.to_string(), digests[0]);
    let layers: Vec<String> = pulled.layers.iter().map(Digest::to_string).collect();
    assert_eq!(layers, digests[1..]);
    for d in &digests {
        let d: Digest = d.parse().unwrap();
        assert_eq!(dst.read_blob(&d).unwrap(), src.read_blob(&d).unwrap());
    }
    let img = dst.resolve(&remote.to_string()).unwrap();
    assert_eq!(img.manifest_digest, made.manifest_digest);
    assert!(dst.fsck().unwrap().is_clean());
}

#[tokio::test]
async fn docker_schema2_gzip_round_trip_and_no_second_upload() {
    if !require_registries() {
        return;
    }
    let client = Client::new(ClientOptions::default());
    let made = make_image(
        "amd64",
        &[("a", Comp::Gzip), ("b", Comp::Gzip)],
        false,
        300_000,
    );
    let repo = unique("schema2");
    let remote = Reference::parse(&format!("{REGISTRY}/{repo}:v1")).unwrap();
    round_trip(&client, &made, &remote).await;

    // Pushing again uploads nothing: every blob is found by HEAD.
    let tmp = kiln_testkit::tempdir();
    let store = Store::open(tmp.path()).unwrap();
    store_image(&store, &remote, &made);
    let events = Events::default();
    client
        .push(&store, &remote, &remote, &events)
        .await
        .unwrap();
    assert_eq!(events.count(|e| matches!(e, Event::Exists { .. })), 3);
    assert_eq!(events.count(|e| matches!(e, Event::Started { .. })), 0);

    // To another repository of the same registry: mounted, not uploaded.
    let other = Reference::parse(&format!("{REGISTRY}/{}:v1", unique("mounted"))).unwrap();
    let events = Events::default();
    let d = client.push(&store, &remote, &other, &events).await.unwrap();
    assert_eq!(d, made.manifest_digest);
    assert_eq!(events.count(|e| matches!(e, Event::Mounted { .. })), 3);
    assert_eq!(events.count(|e| matches!(e, Event::Started { .. })), 0);
}

#[tokio::test]
async fn oci_zstd_and_uncompressed_layers_round_trip() {
    if !require_registries() {
        return;
    }
    let client = Client::new(ClientOptions::default());
    let made = make_image(
        "amd64",
        &[("z", Comp::Zstd), ("u", Comp::None), ("g", Comp::Gzip)],
        true,
        200_000,
    );
    let remote = Reference::parse(&format!("{REGISTRY}/{}:oci", unique("oci"))).unwrap();
    round_trip(&client, &made, &remote).await;
}

#[tokio::test]
async fn pulling_an_index_picks_the_requested_platform() {
    if !require_registries() {
        return;
    }
    let client = Client::new(ClientOptions::default());
    let repo = unique("multi");
    let tmp = kiln_testkit::tempdir();
    let src = Store::open(&tmp.path().join("src")).unwrap();
    let mut entries = Vec::new();
    let mut made_by_arch = Vec::new();
    for (arch, variant) in [("amd64", None), ("arm64", Some("v8")), ("arm", Some("v7"))] {
        let made = make_image(arch, &[(arch, Comp::Gzip)], true, 50_000);
        let tag = format!("{REGISTRY}/{repo}:{arch}");
        store_image(&src, &Reference::parse(&tag).unwrap(), &made);
        let r = Reference::parse(&tag).unwrap();
        client.push(&src, &r, &r, &NoProgress).await.unwrap();
        let mut platform = serde_json::json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            platform["variant"] = v.into();
        }
        entries.push(serde_json::json!({
            "mediaType": mt::OCI_MANIFEST, "size": made.manifest.len(),
            "digest": made.manifest_digest.to_string(), "platform": platform,
        }));
        made_by_arch.push((arch, made));
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": mt::OCI_INDEX, "manifests": entries,
    }))
    .unwrap();
    put_manifest(&repo, "all", mt::OCI_INDEX, &index);

    let all = Reference::parse(&format!("{REGISTRY}/{repo}:all")).unwrap();
    for (platform, arch) in [
        ("linux/arm64", "arm64"),
        ("linux/arm/v7", "arm"),
        ("linux/amd64", "amd64"),
    ] {
        let dst = Store::open(&tmp.path().join(arch)).unwrap();
        let pulled = client
            .pull(&dst, &all, &Platform::parse(platform).unwrap(), &NoProgress)
            .await
            .unwrap();
        let made = &made_by_arch.iter().find(|(a, _)| *a == arch).unwrap().1;
        assert_eq!(pulled.manifest_digest, made.manifest_digest, "{platform}");
        assert_eq!(pulled.index_digest, Some(Digest::sha256(&index)));
        let img = dst.resolve(&all.to_string()).unwrap();
        assert_eq!(img.config.architecture().to_string(), arch);
    }
    let dst = Store::open(&tmp.path().join("none")).unwrap();
    let e = client
        .pull(
            &dst,
            &all,
            &Platform::parse("linux/s390x").unwrap(),
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NoMatchingPlatform { .. }), "{e}");
    assert!(dst.list().unwrap().is_empty());
}

#[tokio::test]
async fn basic_auth_with_login_and_wrong_password() {
    if !require_registries() {
        return;
    }
    let cfg = kiln_testkit::tempdir();
    let client = client_with_config(cfg.path());
    let made = make_image("amd64", &[("auth", Comp::Gzip)], false, 20_000);
    let remote = Reference::parse(&format!("{AUTH_REGISTRY}/{}:v1", unique("auth"))).unwrap();

    // Without credentials: a clear error, nothing stored.
    let tmp = kiln_testkit::tempdir();
    let src = Store::open(&tmp.path().join("src")).unwrap();
    store_image(&src, &remote, &made);
    let e = client
        .push(&src, &remote, &remote, &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("authentication failed for {AUTH_REGISTRY}: check `kiln login`")
    );

    let e = client
        .login(AUTH_REGISTRY, AUTH_USER, "wrong")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::LoginRejected { .. }), "{e}");
    assert!(
        !cfg.path().join("config.json").exists(),
        "nothing stored on failure"
    );

    client
        .login(AUTH_REGISTRY, AUTH_USER, AUTH_PASSWORD)
        .await
        .unwrap();
    let text = std::fs::read_to_string(cfg.path().join("config.json")).unwrap();
    assert!(text.contains(AUTH_REGISTRY), "{text}");

    // A new client reads the stored credentials.
    let client = client_with_config(cfg.path());
    round_trip(&client, &made, &remote).await;

    assert!(client.logout(AUTH_REGISTRY).await.unwrap());
    let client = client_with_config(cfg.path());
    let dst = Store::open(&tmp.path().join("after-logout")).unwrap();
    let e = client
        .pull(&dst, &remote, &amd64(), &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
}

#[tokio::test]
async fn dropped_connections_are_retried() {
    if !require_registries() {
        return;
    }
    let client = Client::new(ClientOptions::default());
    let made = make_image("amd64", &[("drop", Comp::Gzip)], false, 400_000);
    let repo = unique("drop");
    let tmp = kiln_testkit::tempdir();
    let src = Store::open(&tmp.path().join("src")).unwrap();
    let direct = Reference::parse(&format!("{REGISTRY}/{repo}:v1")).unwrap();
    store_image(&src, &direct, &made);
    client
        .push(&src, &direct, &direct, &NoProgress)
        .await
        .unwrap();

    // The first two connections are closed at once, and the first blob
    // download is cut off after 2000 bytes.
    let proxy = proxy(REGISTRY, 2, Some(2000)).await;
    let via = Reference::parse(&format!("{}/{repo}:v1", proxy.addr)).unwrap();
    let dst = Store::open(&tmp.path().join("dst")).unwrap();
    let events = Events::default();
    let pulled = client.pull(&dst, &via, &amd64(), &events).await.unwrap();
    assert_eq!(pulled.manifest_digest, made.manifest_digest);
    assert!(events.count(|e| matches!(e, Event::Retrying { digest: None, .. })) >= 1);
    assert!(
        events.count(|e| matches!(
            e,
            Event::Retrying {
                digest: Some(_),
                ..
            }
        )) >= 1
    );
    assert!(dst.fsck().unwrap().is_clean());
    assert!(proxy.connections.load(std::sync::atomic::Ordering::SeqCst) >= 3);
}

#[tokio::test]
async fn manifest_unknown_and_unreachable_registry() {
    if !require_registries() {
        return;
    }
    let client = Client::new(ClientOptions::default());
    let tmp = kiln_testkit::tempdir();
    let store = Store::open(tmp.path()).unwrap();
    let missing = Reference::parse(&format!("{REGISTRY}/{}:nope", unique("missing"))).unwrap();
    let e = client
        .pull(&store, &missing, &amd64(), &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ManifestUnknown { .. }), "{e}");
    assert!(e.to_string().contains(&missing.to_string()), "{e}");

    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let nowhere = Reference::parse(&format!("127.0.0.1:{port}/x:y")).unwrap();
    let e = client
        .pull(&store, &nowhere, &amd64(), &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("cannot reach registry 127.0.0.1:{port}: connection refused")
    );
    assert!(store.list().unwrap().is_empty());
}
