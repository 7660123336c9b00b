//! What a build was asked to do, parsed from `docker build`-style flags.
//!
//! Parsing lives here (not in the CLI) so that every caller gets the same
//! validation and the same error messages.

use std::path::PathBuf;

use crate::error::OptionError;

/// Where a build's result goes (`-o`/`--output`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// The store, under the build's tags (the default).
    Image,
    /// A `docker load`-able archive.
    Docker { dest: PathBuf },
    /// An OCI image layout archive.
    Oci { dest: PathBuf },
    /// The files of the target stage, written to a host directory.
    Local { dest: PathBuf },
    /// The files of the target stage as one tar.
    Tar { dest: PathBuf },
}

impl Output {
    /// Parses `type=local,dest=out` (or a bare path, which Docker takes as `type=local`).
    pub fn parse(spec: &str) -> Result<Output, OptionError> {
        let bad = |why: &str| OptionError::new("--output", spec, why);
        if !spec.contains('=') {
            if spec.is_empty() {
                return Err(bad("is empty"));
            }
            return Ok(Output::Local { dest: spec.into() });
        }
        let mut kind = None;
        let mut dest = None;
        for field in spec.split(',') {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| bad(&format!("field {field:?} is not key=value")))?;
            match k.trim() {
                "type" => kind = Some(v.trim().to_string()),
                "dest" => dest = Some(PathBuf::from(v.trim())),
                // Accepted by docker for image outputs; the name comes from -t here.
                "name" | "push" => {}
                other => return Err(bad(&format!("unknown field {other:?} (known: type, dest)"))),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs() {
        assert_eq!(
            Output::parse("type=local,dest=out").unwrap(),
            Output::Local { dest: "out".into() }
        );
        assert_eq!(
            Output::parse("out").unwrap(),
            Output::Local { dest: "out".into() }
        );
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
