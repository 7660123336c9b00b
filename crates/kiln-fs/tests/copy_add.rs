//! ADD: local archives extracted by content sniffing; URLs downloaded from a
//! local HTTP server (never extracted), checksums, mode and mtime.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;

use kiln_fs::context::BuildContext;
use kiln_fs::copy::url::{download, file_name_of, UrlError};
use kiln_fs::copy::{copy_into, CopyOptions};

fn tar_bytes() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], mode: u32, kind: tar::EntryType, link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_mtime(1_000_000_000);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
    };
    add("pkg/", b"", 0o755, tar::EntryType::Directory, None);
    add(
        "pkg/bin/tool",
        b"#!/bin/sh\n",
        0o755,
        tar::EntryType::Regular,
        None,
    );
    add("pkg/etc", b"", 0o777, tar::EntryType::Symlink, Some("/etc"));
    b.into_inner().unwrap()
}

fn compressed(kind: &str) -> Vec<u8> {
    let t = tar_bytes();
    match kind {
        "tar" => t,
        "gz" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&t).unwrap();
            e.finish().unwrap()
        }
        "bz2" => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(&t).unwrap();
            e.finish().unwrap()
        }
        "xz" => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(&t).unwrap();
            e.finish().unwrap()
        }
        "zst" => zstd::encode_all(&t[..], 1).unwrap(),
        _ => unreachable!(),
    }
}

fn add_opts(src: &str, dest: &str) -> CopyOptions {
    CopyOptions {
        sources: vec![src.into()],
        dest: dest.into(),
        workdir: "/".into(),
        unpack: true,
        ..Default::default()
    }
}

#[test]
fn local_archives_are_extracted_whatever_their_name() {
    let ctx_dir = tempfile::tempdir().unwrap();
    for kind in ["tar", "gz", "bz2", "xz", "zst"] {
        // Misleading names on purpose: detection is by content.
        fs::write(
            ctx_dir.path().join(format!("a-{kind}.txt")),
            compressed(kind),
        )
        .unwrap();
    }
    fs::write(
        ctx_dir.path().join("plain.tar.gz"),
        b"not an archive at all",
    )
    .unwrap();
    let ctx = BuildContext::open(ctx_dir.path(), None).unwrap();
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("etc")).unwrap();
    for kind in ["tar", "gz", "bz2", "xz", "zst"] {
        let dest = format!("/x/{kind}");
        let stats = copy_into(
            ctx.source(),
            root.path(),
            &add_opts(&format!("a-{kind}.txt"), &dest),
        )
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(stats.archives, 1, "{kind}");
        let tool = root.path().join(format!("x/{kind}/pkg/bin/tool"));
        let m = fs::metadata(&tool).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(m.mode() & 0o7777, 0o755);
        assert_eq!(
            (m.uid(), m.mtime()),
            (1000, 1_000_000_000),
            "tar owner/mtime kept"
        );
        let link = root.path().join(format!("x/{kind}/pkg/etc"));
        assert_eq!(fs::read_link(link).unwrap().to_str(), Some("/etc"));
    }
    // Not an archive → copied as a file, even with a .tar.gz name.
    let s = copy_into(ctx.source(), root.path(), &add_opts("plain.tar.gz", "/y/")).unwrap();
    assert_eq!(s.archives, 0);
    assert!(root.path().join("y/plain.tar.gz").is_file());
    // COPY never extracts.
    let mut o = add_opts("a-gz.txt", "/z/");
    o.unpack = false;
    copy_into(ctx.source(), root.path(), &o).unwrap();
    assert!(root.path().join("z/a-gz.txt").is_file());
}

#[test]
fn extraction_with_chown_and_through_hostile_destination() {
    let outside = tempfile::tempdir().unwrap();
    let ctx_dir = tempfile::tempdir().unwrap();
    fs::write(ctx_dir.path().join("a.tgz"), compressed("gz")).unwrap();
    let ctx = BuildContext::open(ctx_dir.path(), None).unwrap();
    let root = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("opt")).unwrap();
    let mut o = add_opts("a.tgz", "/opt/app");
    o.chown = Some("5:6".into());
    copy_into(ctx.source(), root.path(), &o).unwrap();
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    let inner = root.path().join(outside.path().strip_prefix("/").unwrap());
    let m = fs::metadata(inner.join("app/pkg/bin/tool")).unwrap();
    assert_eq!((m.uid(), m.gid()), (5, 6));
}

/// Serves `body` to `n` requests on 127.0.0.1, with Last-Modified.
fn serve(body: Vec<u8>, status: &'static str, n: usize) -> (String, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        for _ in 0..n {
            let (mut s, _) = l.accept().unwrap();
            let mut req = [0u8; 4096];
            let mut got = 0;
            while !req[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                let k = s.read(&mut req[got..]).unwrap();
                if k == 0 {
                    break;
                }
                got += k;
            }
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nLast-Modified: Sat, 03 Feb 2001 04:05:06 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(&body).unwrap();
        }
    });
    (format!("http://{addr}"), h)
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

#[test]
fn url_download_checksum_mode_and_mtime() {
    let body = compressed("gz"); // an archive: must NOT be extracted from a URL
    let (base, server) = serve(body.clone(), "200 OK", 2);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = kiln_fs::copy::url::client().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("{base}/files/app%20v1.tgz?x=1");
    let good = format!("sha256:{}", sha256_hex(&body));
    let d = rt
        .block_on(download(&client, &url, Some(&good), tmp.path()))
        .unwrap();
    assert_eq!(d.file_name, "app v1.tgz");
    assert_eq!(d.sha256, good);
    assert_eq!(d.size, body.len() as u64);
    let root = tempfile::tempdir().unwrap();
    let o = CopyOptions {
        dest: "/dl/".into(),
        unpack: true,
        ..Default::default()
    };
    d.copy_into(root.path(), &o).unwrap();
    let f = root.path().join("dl/app v1.tgz");
    let m = fs::metadata(&f).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o600);
    assert_eq!(m.mtime(), 981_173_106, "mtime from Last-Modified");
    assert_eq!(
        fs::read(&f).unwrap(),
        body,
        "URL sources are never extracted"
    );

    // A wrong checksum: error with the URL and both digests, nothing kept.
    let bad = format!("sha256:{}", "0".repeat(64));
    let e = rt
        .block_on(download(&client, &url, Some(&bad), tmp.path()))
        .err()
        .unwrap();
    let msg = e.to_string();
    assert!(matches!(e, UrlError::Checksum { .. }));
    assert!(
        msg.contains(&url) && msg.contains(&bad) && msg.contains(&good),
        "{msg}"
    );
    server.join().unwrap();
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "only the first download remains"
    );
    drop(d);
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    assert!(rt
        .block_on(download(&client, &url, Some("md5:abc"), tmp.path()))
        .is_err());
}

#[test]
fn url_http_errors_name_the_url_and_status() {
    let (base, server) = serve(b"nope".to_vec(), "404 Not Found", 1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = kiln_fs::copy::url::client().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("{base}/missing");
    let e = rt
        .block_on(download(&client, &url, None, tmp.path()))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains(&url) && e.contains("404"), "{e}");
    server.join().unwrap();
}

#[test]
fn url_file_names_like_buildkit() {
    assert_eq!(file_name_of("https://example.com/a/b.tar.gz"), "b.tar.gz");
    assert_eq!(file_name_of("https://example.com/"), "__unnamed__");
    assert_eq!(file_name_of("https://example.com"), "__unnamed__");
    assert_eq!(file_name_of("https://example.com/dir/"), "dir");
    assert_eq!(file_name_of("https://example.com/a%2Fb"), "a_b");
}
