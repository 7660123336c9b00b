//! `ADD <http(s) url> <dest>`: download (never extracted), optional
//! `--checksum=sha256:<hex>` verification, file mode 0600 and mtime from
//! `Last-Modified` (BuildKit's HTTP source), then copied like any file.
//!
//! Lifecycle: `let d = download(&client()?, url, checksum, tmp).await?;`
//! then `d.copy_into(rootfs, &opts)` (blocking; run it off the async
//! threads). `d.sha256` is the content digest for the cache key.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};

use super::{copy_into, CopyError, CopyOptions, CopyStats};
use crate::context::SourceRoot;

#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("ADD {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("ADD {url}: server answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("ADD {url}: checksum mismatch: expected {expected}, downloaded content is {actual}")]
    Checksum {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("ADD --checksum={0:?}: expected sha256:<64 hex digits>")]
    BadChecksum(String),
    #[error("ADD {url}: write download to {path}: {source}")]
    Write {
        url: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A finished, verified download in a scratch directory.
pub struct Download {
    dir: tempfile::TempDir,
    /// Name the file gets inside a destination directory: the URL path's
    /// last segment, or `__unnamed__` (BuildKit's name) when it has none.
    pub file_name: String,
    /// `sha256:<hex>` of the content.
    pub sha256: String,
    pub size: u64,
    pub last_modified: Option<SystemTime>,
}

/// An HTTP client with rustls on the ring provider (no OpenSSL).
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The file name BuildKit's Dockerfile frontend gives a URL source.
pub fn file_name_of(url: &str) -> String {
    let path = reqwest::Url::parse(url)
        .map(|u| u.path().to_string())
        .unwrap_or_default();
    let base = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let decoded = percent_decode(base);
    if decoded.is_empty() || decoded == "." || decoded == ".." {
        "__unnamed__".to_string()
    } else {
        decoded
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).replace('/', "_")
}

fn parse_checksum(c: &str) -> Result<String, UrlError> {
    let hex = c
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| UrlError::BadChecksum(c.to_string()))?;
    Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
}

/// Downloads `url` into a new scratch directory under `tmp_parent`. With a
/// checksum, a mismatch is an error and nothing is kept.
pub async fn download(
    client: &reqwest::Client,
    url: &str,
    checksum: Option<&str>,
    tmp_parent: &Path,
) -> Result<Download, UrlError> {
    let expected = checksum.map(parse_checksum).transpose()?;
    let http = |source| UrlError::Http {
        url: url.to_string(),
        source,
    };
    let file_name = file_name_of(url);
    let dir = tempfile::Builder::new()
        .prefix("kiln-download-")
        .tempdir_in(tmp_parent)
        .map_err(|source| UrlError::Write {
            url: url.to_string(),
            path: tmp_parent.to_path_buf(),
            source,
        })?;
    let path = dir.path().join(&file_name);
    let werr = |source| UrlError::Write {
        url: url.to_string(),
        path: path.clone(),
        source,
    };
    let mut resp = client.get(url).send().await.map_err(http)?;
    if !resp.status().is_success() {
        return Err(UrlError::Status {
            url: url.to_string(),
            status: resp.status(),
        });
    }
    let last_modified = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(werr)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(http)? {
        hasher.update(&chunk);
        size += chunk.len() as u64;
        file.write_all(&chunk).map_err(werr)?;
    }
    let sha256 = format!("sha256:{}", hex::encode(hasher.finalize()));
    if let Some(expected) = expected {
        if expected != sha256 {
            return Err(UrlError::Checksum {
                url: url.to_string(),
                expected,
                actual: sha256,
            });
        }
    }
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(werr)?;
    if let Some(t) = last_modified {
        file.set_modified(t).map_err(werr)?;
    }
    drop(file);
    Ok(Download {
        dir,
        file_name,
        sha256,
        size,
        last_modified,
    })
}

impl Download {
    /// Path of the downloaded file.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join(&self.file_name)
    }

    /// Copies the download to `opts.dest` with COPY's rules (sources and
    /// `unpack` in `opts` are ignored: a URL is one file, never extracted).
    pub fn copy_into(&self, rootfs: &Path, opts: &CopyOptions) -> Result<CopyStats, CopyError> {
        let src = SourceRoot::scratch(self.dir.path()).map_err(|source| CopyError::Dest {
            dest: self.dir.path().display().to_string(),
            rootfs: rootfs.to_path_buf(),
            source,
        })?;
        let opts = CopyOptions {
            sources: vec![self.file_name.clone()],
            unpack: false,
            parents: false,
            ..opts.clone()
        };
        copy_into(&src, rootfs, &opts)
    }
}
