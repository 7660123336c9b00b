//! Credentials in Docker's `config.json`: reading them for a registry
//! (`auths`, `credHelpers`, `credsStore`) and writing them the way
//! `docker login` / `docker logout` do.
//!
//! The file is found like Docker finds it: the explicit path kiln was given,
//! else `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use docker_credential::{CredentialRetrievalError, DockerCredential};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The key Docker uses for Docker Hub in `auths` and with helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Anonymous,
    Basic { username: String, password: String },
}

impl std::fmt::Debug for Credentials {
    // Never print a password, even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
        }
    }
}

/// Location of Docker's client configuration.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
}

impl DockerConfig {
    /// `explicit` (a `config.json` file or the directory holding it), else
    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn locate(explicit: Option<&Path>) -> DockerConfig {
        let path = match explicit {
            Some(p) if p.is_dir() => p.join("config.json"),
            Some(p) => p.to_path_buf(),
            None => std::env::var_os("DOCKER_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
                .unwrap_or_else(|| PathBuf::from(".docker"))
                .join("config.json"),
        };
        DockerConfig { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Credentials for `registry` (`host[:port]`, `docker.io` for Docker Hub).
    /// A missing file or entry means anonymous access.
    pub fn credentials(&self, registry: &str) -> Result<Credentials> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Credentials::Anonymous)
            }
            Err(e) => return Err(self.read_error(registry, e.to_string())),
        };
        let server = server_key(registry);
        match docker_credential::get_credential_from_reader(&bytes[..], &server) {
            Ok(DockerCredential::UsernamePassword(username, password)) => {
                Ok(Credentials::Basic { username, password })
            }
            Ok(DockerCredential::IdentityToken(_)) => {
                // An identity token is an OAuth2 refresh token; the
                // distribution client has no refresh-token grant, so it would
                // fail later with a confusing error. Say it now.
                Err(self.read_error(
                    registry,
                    "identity tokens (OAuth2 refresh tokens) are not supported; \
                     run `kiln login` with a username and password"
                        .into(),
                ))
            }
            Err(CredentialRetrievalError::NoCredentialConfigured) => Ok(Credentials::Anonymous),
            // A helper that has nothing stored for this server: anonymous,
            // as Docker does.
            Err(CredentialRetrievalError::HelperFailure { stdout, stderr, .. })
                if is_not_found(&stdout) || is_not_found(&stderr) =>
            {
                Ok(Credentials::Anonymous)
            }
            Err(e) => Err(self.read_error(registry, e.to_string())),
        }
    }

    fn read_error(&self, registry: &str, cause: String) -> Error {
        Error::Credentials {
            registry: registry.to_string(),
            path: self.path.clone(),
            cause,
        }
    }

    fn load(&self) -> Result<Map<String, Value>> {
        match std::fs::read(&self.path) {
            Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(Value::Object(m)) => Ok(m),
                Ok(_) => Err(self.write_error("not a JSON object".into())),
                Err(e) => Err(self.write_error(format!("invalid JSON: {e}"))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
            Err(e) => Err(self.write_error(e.to_string())),
        }
    }

    fn write_error(&self, cause: String) -> Error {
        Error::ConfigWrite {
            path: self.path.clone(),
            cause,
        }
    }

    /// The credential helper configured for `registry`, if any
    /// (`credHelpers[server]`, else `credsStore`).
    fn helper_for(&self, config: &Map<String, Value>, registry: &str) -> Option<String> {
        let server = server_key(registry);
        let specific = config
            .get("credHelpers")
            .and_then(|h| h.get(&server))
            .and_then(Value::as_str);
        specific
            .or_else(|| config.get("credsStore").and_then(Value::as_str))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// Stores credentials for `registry`: with its credential helper when one
    /// is configured, else as a base64 `auth` entry under `auths`. Every other
    /// field of the file is kept.
    pub fn store(&self, registry: &str, username: &str, password: &str) -> Result<()> {
        let mut config = self.load()?;
        let server = server_key(registry);
        if let Some(helper) = self.helper_for(&config, registry) {
            let input = serde_json::json!({
                "ServerURL": server, "Username": username, "Secret": password,
            });
            run_helper(&helper, registry, "store", input.to_string().as_bytes())?;
            // Docker leaves an empty entry so `docker info` lists the login.
            auths_mut(&mut config).insert(server, Value::Object(Map::new()));
        } else {
            let auth =
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            auths_mut(&mut config).insert(server, serde_json::json!({ "auth": auth }));
        }
        self.save(&config)
    }

    /// Removes stored credentials for `registry`. Returns whether there were any.
    pub fn remove(&self, registry: &str) -> Result<bool> {
        let mut config = self.load()?;
        let server = server_key(registry);
        let mut found = false;
        if let Some(helper) = self.helper_for(&config, registry) {
            match run_helper(&helper, registry, "erase", server.as_bytes()) {
                Ok(_) => found = true,
                Err(Error::Helper { cause, .. }) if is_not_found(&cause) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(Value::Object(auths)) = config.get_mut("auths") {
            let keys: Vec<String> = auths
                .keys()
                .filter(|k| key_matches(k, &server))
                .cloned()
                .collect();
            for k in keys {
                auths.remove(&k);
                found = true;
            }
        }
        if found {
            self.save(&config)?;
        }
        Ok(found)
    }

    /// Writes atomically (temp file + rename), owner-only like Docker.
    fn save(&self, config: &Map<String, Value>) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| self.write_error(e.to_string()))?;
        let tmp = dir.join(format!(".config.json.kiln-{}", std::process::id()));
        let mut text = serde_json::to_vec_pretty(config).expect("a JSON map serialises");
        text.push(b'\n');
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.write_error(e.to_string())
        })
    }
}

fn auths_mut(config: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let entry = config
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut().expect("just made an object")
}

/// The key Docker files a registry's credentials under.
pub(crate) fn server_key(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_KEY.to_string(),
        r => r.to_string(),
    }
}

/// Whether an `auths` key refers to `server` (keys may carry a scheme and path,
/// `https://host/v1/`, as older Docker versions wrote them).
fn key_matches(key: &str, server: &str) -> bool {
    if key == server {
        return true;
    }
    let host = |k: &str| {
        let k = k
            .strip_prefix("https://")
            .or_else(|| k.strip_prefix("http://"))
            .unwrap_or(k);
        k.split('/').next().unwrap_or(k).to_string()
    };
    host(key) == host(server)
}

fn is_not_found(text: &str) -> bool {
    text.contains("credentials not found")
}

fn run_helper(helper: &str, registry: &str, action: &str, input: &[u8]) -> Result<Vec<u8>> {
    let program = format!("docker-credential-{helper}");
    let fail = |cause: String| Error::Helper {
        helper: helper.to_string(),
        registry: registry.to_string(),
        cause,
    };
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {program}: {e}")))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input)
        .map_err(|e| fail(format!("writing to {program}: {e}")))?;
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("waiting for {program}: {e}")))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string()
            + String::from_utf8_lossy(&out.stderr).trim();
        return Err(fail(format!("{action}: {} ({})", text, out.status)));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_in(dir: &Path, text: &str) -> DockerConfig {
        let path = dir.join("config.json");
        std::fs::write(&path, text).unwrap();
        DockerConfig::locate(Some(&path))
    }

    #[test]
    fn missing_file_is_anonymous() {
        let dir = kiln_testkit::tempdir();
        let c = DockerConfig::locate(Some(&dir.path().join("nope.json")));
        assert_eq!(c.credentials("r:5000").unwrap(), Credentials::Anonymous);
    }

    #[test]
    fn reads_auths_and_ignores_other_registries() {
        let dir = kiln_testkit::tempdir();
        // "kiln:pw" in base64
        let c = config_in(
            dir.path(),
            r#"{"auths":{"r:5001":{"auth":"a2lsbjpwdw=="}, "other":{"auth":"eDp5"}}}"#,
        );
        assert_eq!(
            c.credentials("r:5001").unwrap(),
            Credentials::Basic {
                username: "kiln".into(),
                password: "pw".into()
            }
        );
        assert_eq!(c.credentials("r:5000").unwrap(), Credentials::Anonymous);
    }

    #[test]
    fn docker_hub_uses_the_v1_key() {
        let dir = kiln_testkit::tempdir();
        let c = config_in(
            dir.path(),
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"a2lsbjpwdw=="}}}"#,
        );
        assert!(matches!(
            c.credentials("docker.io").unwrap(),
            Credentials::Basic { .. }
        ));
    }

    #[test]
    fn malformed_file_names_the_path() {
        let dir = kiln_testkit::tempdir();
        let c = config_in(dir.path(), "{not json");
        let e = c.credentials("r:5001").unwrap_err().to_string();
        assert!(e.contains("config.json"), "{e}");
    }

    #[test]
    fn store_keeps_other_fields_and_remove_deletes_the_entry() {
        let dir = kiln_testkit::tempdir();
        let c = config_in(
            dir.path(),
            r#"{"auths":{"keep:1":{"auth":"eDp5"}},"psFormat":"table"}"#,
        );
        c.store("r:5001", "kiln", "s3:cret").unwrap();
        assert_eq!(
            c.credentials("r:5001").unwrap(),
            Credentials::Basic {
                username: "kiln".into(),
                password: "s3:cret".into()
            }
        );
        let v: Value = serde_json::from_slice(&std::fs::read(c.path()).unwrap()).unwrap();
        assert_eq!(v["psFormat"], "table");
        assert!(v["auths"]["keep:1"].is_object());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(c.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        assert!(c.remove("r:5001").unwrap());
        assert!(!c.remove("r:5001").unwrap());
        assert_eq!(c.credentials("r:5001").unwrap(), Credentials::Anonymous);
        let v: Value = serde_json::from_slice(&std::fs::read(c.path()).unwrap()).unwrap();
        assert!(v["auths"]["keep:1"].is_object());
    }

    #[test]
    fn store_creates_the_directory_and_file() {
        let dir = kiln_testkit::tempdir();
        let c = DockerConfig::locate(Some(&dir.path().join("sub/config.json")));
        c.store("r:5001", "u", "p").unwrap();
        assert!(matches!(
            c.credentials("r:5001").unwrap(),
            Credentials::Basic { .. }
        ));
    }

    #[test]
    fn credential_helper_is_used_for_reading() {
        let dir = kiln_testkit::tempdir();
        // A fake helper on PATH would need env changes shared by all tests;
        // a helper that is missing must give an error naming it instead.
        let c = config_in(
            dir.path(),
            r#"{"credHelpers":{"r:5001":"kiln-nonexistent"}}"#,
        );
        let e = c.credentials("r:5001").unwrap_err().to_string();
        assert!(e.contains("r:5001"), "{e}");
        assert_eq!(c.credentials("r:5000").unwrap(), Credentials::Anonymous);
    }
}
