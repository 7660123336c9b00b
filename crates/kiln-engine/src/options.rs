//! What a build was asked to do, parsed from `docker build`-style flags.
//!
//! Parsing lives here (not in the CLI) so that every caller gets the same
//! validation and the same error messages.

use std::path::PathBuf;

use crate::error::OptionError;

/// `--compression`: how the layers a build sends out are compressed (the
/// formats themselves are `kiln_oci::compression`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LayerCompression {
    #[default]
    Gzip,
    /// zstd, with OCI media types.
    Zstd,
    /// No compression.
    Uncompressed,
}

impl LayerCompression {
    /// The format, and the OCI media type of a layer in it.
    pub fn format(self) -> (kiln_oci::Compression, &'static str) {
        use kiln_oci::media_type as mt;
        match self {
            LayerCompression::Gzip => (kiln_oci::Compression::Gzip, mt::OCI_LAYER_GZIP),
            LayerCompression::Zstd => (kiln_oci::Compression::Zstd, mt::OCI_LAYER_ZSTD),
            LayerCompression::Uncompressed => (kiln_oci::Compression::None, mt::OCI_LAYER),
        }
    }
}

/// Where a build's result goes (`-o`/`--output`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// The store, under the build's tags (the default).
    Image,
    /// A `docker load`-able archive.
    Docker { dest: PathBuf },
    /// An OCI image layout archive.
    Oci { dest: PathBuf },
    /// The files of the target stage, written to a host directory; devices,
    /// setuid/setgid bits and owners only as far as `keep` allows.
    Local {
        dest: PathBuf,
        keep: kiln_fs::copy::HostPolicy,
    },
    /// The files of the target stage as one tar.
    Tar { dest: PathBuf },
}

impl Output {
    /// The file or directory it writes, if any.
    pub fn dest(&self) -> Option<PathBuf> {
        match self {
            Output::Image => None,
            Output::Docker { dest }
            | Output::Oci { dest }
            | Output::Local { dest, .. }
            | Output::Tar { dest } => Some(dest.clone()),
        }
    }

    /// Parses `type=local,dest=out` (or a bare path, which Docker takes as `type=local`).
    pub fn parse(spec: &str) -> Result<Output, OptionError> {
        let bad = |why: &str| OptionError::new("--output", spec, why);
        if !spec.contains('=') {
            if spec.is_empty() {
                return Err(bad("is empty"));
            }
            return Ok(Output::Local {
                dest: spec.into(),
                keep: Default::default(),
            });
        }
        let mut kind = None;
        let mut dest = None;
        let mut keep = kiln_fs::copy::HostPolicy::default();
        for field in spec.split(',') {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| bad(&format!("field {field:?} is not key=value")))?;
            match k.trim() {
                "type" => kind = Some(v.trim().to_string()),
                "dest" => dest = Some(PathBuf::from(v.trim())),
                // Accepted by docker for image outputs; the name comes from -t here.
                "name" | "push" => {}
                // type=local: what an untrusted image may put on the host.
                "archive" => keep.owners = parse_bool(v).ok_or_else(|| bad("archive= takes true or false"))?,
                "keep-setid" => keep.setid = parse_bool(v).ok_or_else(|| bad("keep-setid= takes true or false"))?,
                "devices" => keep.devices = parse_bool(v).ok_or_else(|| bad("devices= takes true or false"))?,
                other => {
                    return Err(bad(&format!(
                        "unknown field {other:?} (known: type, dest; for type=local also archive, keep-setid, devices)"
                    )))
                }
            }
        }
        let kind = kind.ok_or_else(|| bad("missing type= (image, docker, oci, local or tar)"))?;
        let need_dest =
            |d: Option<PathBuf>| d.ok_or_else(|| bad(&format!("type={kind} needs dest=PATH")));
        Ok(match kind.as_str() {
            "image" | "registry" => Output::Image,
            "docker" => Output::Docker {
                dest: need_dest(dest)?,
            },
            "oci" => Output::Oci {
                dest: need_dest(dest)?,
            },
            "local" => Output::Local {
                dest: need_dest(dest)?,
                keep,
            },
            "tar" => Output::Tar {
                dest: need_dest(dest)?,
            },
            other => {
                return Err(bad(&format!(
                    "unknown type {other:?} (known: image, docker, oci, local, tar)"
                )))
            }
        })
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// Where a secret's value comes from (`--secret id=ID,src=FILE|env=VAR`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secret {
    pub id: String,
    pub source: SecretSource,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

impl Secret {
    pub fn parse(spec: &str) -> Result<Secret, OptionError> {
        let bad = |why: &str| OptionError::new("--secret", spec, why);
        let mut id = None;
        let mut source = None;
        let mut kind = None;
        for field in spec.split(',') {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| bad(&format!("field {field:?} is not key=value")))?;
            match k.trim() {
                "id" => id = Some(v.to_string()),
                "src" | "source" => source = Some(SecretSource::File(v.into())),
                "env" => source = Some(SecretSource::Env(v.to_string())),
                "type" => kind = Some(v.to_string()),
                other => {
                    return Err(bad(&format!(
                        "unknown field {other:?} (known: id, src, env, type)"
                    )))
                }
            }
        }
        let id = id
            .filter(|i| !i.is_empty())
            .ok_or_else(|| bad("missing id="))?;
        // Like buildx: with neither src nor env, the id names an env variable
        // or a file, depending on type (default: env if set, else file).
        let source = match (source, kind.as_deref()) {
            (Some(s), _) => s,
            (None, Some("env")) => SecretSource::Env(id.clone()),
            (None, Some("file")) => SecretSource::File(id.clone().into()),
            (None, None) if std::env::var_os(&id).is_some() => SecretSource::Env(id.clone()),
            (None, None) => SecretSource::File(id.clone().into()),
            (None, Some(other)) => {
                return Err(bad(&format!("unknown type {other:?} (env or file)")))
            }
        };
        Ok(Secret { id, source })
    }

    /// Reads the secret's value now, so a missing file fails before any step runs.
    pub fn read(&self) -> Result<Vec<u8>, OptionError> {
        match &self.source {
            SecretSource::File(p) => std::fs::read(p).map_err(|e| {
                OptionError::new(
                    "--secret",
                    &self.id,
                    &format!("cannot read {}: {e}", p.display()),
                )
            }),
            SecretSource::Env(v) => std::env::var_os(v)
                .map(|s| s.into_encoded_bytes())
                .ok_or_else(|| {
                    OptionError::new(
                        "--secret",
                        &self.id,
                        &format!("environment variable {v} is not set"),
                    )
                }),
        }
    }
}

/// Parses `--build-arg K=V`; a bare `K` takes its value from the environment,
/// as docker does (and is dropped when the environment has none).
pub fn parse_build_arg(spec: &str) -> Result<Option<(String, String)>, OptionError> {
    let (k, v) = match spec.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (spec, std::env::var(spec).ok()),
    };
    if k.is_empty() || k.contains(char::is_whitespace) {
        return Err(OptionError::new(
            "--build-arg",
            spec,
            "expected KEY=VALUE with a non-empty key without spaces",
        ));
    }
    Ok(v.map(|v| (k.to_string(), v)))
}

/// Parses `--label K=V`.
pub fn parse_label(spec: &str) -> Result<(String, String), OptionError> {
    match spec.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(OptionError::new("--label", spec, "expected KEY=VALUE")),
    }
}

/// Network of RUN steps (`--network`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NetworkMode {
    /// The host's network: what `docker build` calls default.
    #[default]
    Host,
    None,
}

impl NetworkMode {
    pub fn parse(s: &str) -> Result<NetworkMode, OptionError> {
        match s {
            "default" | "host" => Ok(NetworkMode::Host),
            "none" => Ok(NetworkMode::None),
            _ => Err(OptionError::new(
                "--network",
                s,
                "expected default, none or host",
            )),
        }
    }
}

/// `--cache-to`: where a build exports its cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheTo {
    pub target: CacheTarget,
    /// `mode=max`: every stage's steps; `min` (default): the target's.
    pub max: bool,
    /// `cache-mounts=true`: `RUN --mount=type=cache` contents too.
    pub cache_mounts: bool,
    /// `compression=`: how the exported layer blobs are compressed.
    pub compression: LayerCompression,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheTarget {
    /// A cache manifest at this reference.
    Registry(kiln_oci::Reference),
    /// An OCI image layout directory.
    Local(PathBuf),
    /// In the pushed image's config (always `mode=min`).
    Inline,
}

/// `--cache-from`: a cache to import (a cache manifest, an image with an
/// inline cache, or a local directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheFrom {
    Registry(kiln_oci::Reference),
    Local(PathBuf),
}

/// `type=…,key=value,…` fields, or a bare reference as docker takes it.
fn cache_fields<'a>(
    flag: &'static str,
    spec: &'a str,
) -> Result<Vec<(&'a str, &'a str)>, OptionError> {
    if !spec.contains('=') {
        return Ok(vec![("type", "registry"), ("ref", spec)]);
    }
    spec.split(',')
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| {
                    OptionError::new(flag, spec, &format!("field {f:?} is not key=value"))
                })
        })
        .collect()
}

fn cache_ref(
    flag: &'static str,
    spec: &str,
    r: Option<&str>,
) -> Result<kiln_oci::Reference, OptionError> {
    let r =
        r.ok_or_else(|| OptionError::new(flag, spec, "type=registry needs ref=REGISTRY/REPO:TAG"))?;
    kiln_oci::Reference::parse(r)
        .map_err(|e| OptionError::new(flag, spec, &format!("ref {r:?}: {e}")))
}

impl CacheTo {
    pub fn parse(spec: &str) -> Result<CacheTo, OptionError> {
        let bad = |why: &str| OptionError::new("--cache-to", spec, why);
        let (mut kind, mut reference, mut dest, mut max, mut mounts) =
            (None, None, None, false, false);
        let mut compression = LayerCompression::Gzip;
        for (k, v) in cache_fields("--cache-to", spec)? {
            match k {
                "type" => kind = Some(v),
                "ref" => reference = Some(v),
                "dest" => dest = Some(v),
                "mode" => {
                    max = match v {
                        "min" => false,
                        "max" => true,
                        _ => return Err(bad("mode is min or max")),
                    }
                }
                "cache-mounts" => mounts = v == "true",
                "compression" => {
                    compression = clap::ValueEnum::from_str(v, false)
                        .map_err(|_| bad("compression is gzip, zstd or uncompressed"))?
                }
                // BuildKit's: kiln always writes the OCI image-manifest form.
                "image-manifest" | "oci-mediatypes" | "ignore-error" => {}
                other => {
                    return Err(bad(&format!(
                        "unknown field {other:?} (known: type, ref, dest, mode, cache-mounts, compression)"
                    )))
                }
            }
        }
        let target = match kind {
            Some("registry") => CacheTarget::Registry(cache_ref("--cache-to", spec, reference)?),
            Some("local") => {
                CacheTarget::Local(dest.ok_or_else(|| bad("type=local needs dest=DIR"))?.into())
            }
            Some("inline") => CacheTarget::Inline,
            Some(other) => {
                return Err(bad(&format!(
                    "unknown type {other:?} (registry, local or inline)"
                )))
            }
            None => return Err(bad("missing type= (registry, local or inline)")),
        };
        Ok(CacheTo {
            max: max && target != CacheTarget::Inline,
            target,
            cache_mounts: mounts,
            compression,
        })
    }
}

impl CacheFrom {
    pub fn parse(spec: &str) -> Result<CacheFrom, OptionError> {
        let bad = |why: &str| OptionError::new("--cache-from", spec, why);
        let (mut kind, mut reference, mut src) = (None, None, None);
        for (k, v) in cache_fields("--cache-from", spec)? {
            match k {
                "type" => kind = Some(v),
                "ref" => reference = Some(v),
                "src" => src = Some(v),
                other => {
                    return Err(bad(&format!(
                        "unknown field {other:?} (known: type, ref, src)"
                    )))
                }
            }
        }
        match kind {
            Some("registry") => Ok(CacheFrom::Registry(cache_ref(
                "--cache-from",
                spec,
                reference,
            )?)),
            Some("local") => Ok(CacheFrom::Local(
                src.ok_or_else(|| bad("type=local needs src=DIR"))?.into(),
            )),
            Some(other) => Err(bad(&format!("unknown type {other:?} (registry or local)"))),
            None => Err(bad("missing type= (registry or local)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs() {
        assert_eq!(
            Output::parse("type=local,dest=out").unwrap(),
            Output::Local {
                dest: "out".into(),
                keep: Default::default()
            }
        );
        assert_eq!(
            Output::parse("out").unwrap(),
            Output::Local {
                dest: "out".into(),
                keep: Default::default()
            }
        );
        assert_eq!(
            Output::parse("type=local,dest=out,devices=true,archive=1").unwrap(),
            Output::Local {
                dest: "out".into(),
                keep: kiln_fs::copy::HostPolicy {
                    devices: true,
                    setid: false,
                    owners: true
                }
            }
        );
        assert!(Output::parse("type=local,dest=out,devices=yes").is_err());
        assert_eq!(
            Output::parse("type=docker,dest=a.tar").unwrap(),
            Output::Docker {
                dest: "a.tar".into()
            }
        );
        let e = Output::parse("type=zip,dest=x").unwrap_err().to_string();
        assert!(e.contains("unknown type \"zip\""), "{e}");
        let e = Output::parse("type=tar").unwrap_err().to_string();
        assert!(e.contains("needs dest="), "{e}");
        assert!(Output::parse("type=local,dst=x").is_err());
    }

    #[test]
    fn cache_options() {
        let t = CacheTo::parse("type=registry,ref=127.0.0.1:5000/app/cache:main,mode=max").unwrap();
        assert!(t.max && !t.cache_mounts);
        assert_eq!(t.compression, LayerCompression::Gzip);
        assert!(matches!(t.target, CacheTarget::Registry(ref r) if r.repository() == "app/cache"));
        let t = CacheTo::parse("type=local,dest=/tmp/c,cache-mounts=true").unwrap();
        assert_eq!(t.target, CacheTarget::Local("/tmp/c".into()));
        assert!(t.cache_mounts && !t.max);
        let t = CacheTo::parse("type=local,dest=/tmp/c,compression=zstd").unwrap();
        assert_eq!(t.compression, LayerCompression::Zstd);
        let t = CacheTo::parse("type=local,dest=/tmp/c,compression=uncompressed").unwrap();
        assert_eq!(t.compression, LayerCompression::Uncompressed);
        let e = CacheTo::parse("type=local,dest=/tmp/c,compression=estargz")
            .unwrap_err()
            .to_string();
        assert!(e.contains("gzip, zstd or uncompressed"), "{e}");
        assert!(!CacheTo::parse("type=inline,mode=max").unwrap().max);
        let e = CacheTo::parse("type=registry,mode=max")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs ref="), "{e}");
        assert!(CacheTo::parse("type=s3,ref=x").is_err());
        assert!(CacheTo::parse("type=local").is_err());
        assert!(CacheTo::parse("type=registry,ref=x,mode=all").is_err());
        assert_eq!(
            CacheFrom::parse("type=local,src=d").unwrap(),
            CacheFrom::Local("d".into())
        );
        assert!(matches!(
            CacheFrom::parse("localhost:5000/c:1").unwrap(),
            CacheFrom::Registry(_)
        ));
        assert!(CacheFrom::parse("type=registry,ref=UPPER/x").is_err());
    }

    #[test]
    fn secrets() {
        let s = Secret::parse("id=tok,src=/tmp/x").unwrap();
        assert_eq!(s.source, SecretSource::File("/tmp/x".into()));
        let s = Secret::parse("id=tok,env=TOKEN").unwrap();
        assert_eq!(s.source, SecretSource::Env("TOKEN".into()));
        assert!(Secret::parse("src=/tmp/x").is_err());
        assert!(Secret::parse("id=a,color=red").is_err());
        let e = Secret::parse("id=a,src=/nonexistent/kiln")
            .unwrap()
            .read()
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/kiln"), "{e}");
    }

    #[test]
    fn build_args() {
        assert_eq!(
            parse_build_arg("A=1").unwrap(),
            Some(("A".into(), "1".into()))
        );
        assert_eq!(
            parse_build_arg("A=").unwrap(),
            Some(("A".into(), "".into()))
        );
        assert!(parse_build_arg("=1").is_err());
        assert_eq!(parse_build_arg("KILN_SURELY_UNSET_VAR").unwrap(), None);
    }
}
