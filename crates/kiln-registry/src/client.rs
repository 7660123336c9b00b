//! The registry client: one [`Session`] per registry, set up with the
//! registry's scheme (HTTP for loopback and `--insecure-registry`), its auth
//! challenge and the credentials Docker's config holds for it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::config::{Credentials, DockerConfig};
use crate::endpoint;
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::progress::{Event, Progress};
use crate::retry::{retry, Failure};
use crate::session::Session;

/// How a [`Client`] reaches registries.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Registries (`host[:port]` or `host`) spoken to over plain HTTP besides
    /// loopback ones, which always are.
    pub insecure_registries: Vec<String>,
    /// Docker's `config.json` (or its directory). Default:
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    pub docker_config: Option<PathBuf>,
    /// Blobs moved at once per pull or push. 0 means the default, 3 (as Docker).
    pub max_concurrent_transfers: usize,
    /// Size limits and timeouts for what registries send.
    pub limits: Limits,
}

/// An OCI distribution client. Cheap to share by reference; holds a
/// connection pool and auth tokens per registry.
pub struct Client {
    opts: ClientOptions,
    docker_config: DockerConfig,
    /// For `/v2/` probes and logins.
    http: reqwest::Client,
    /// For everything else: see [`Session::http`].
    api_http: reqwest::Client,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

impl Client {
    pub fn new(opts: ClientOptions) -> Client {
        crate::install_crypto_provider();
        let docker_config = DockerConfig::locate(opts.docker_config.as_deref());
        Client {
            http: endpoint::http_client(&opts.limits),
            api_http: endpoint::http_client_builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a client with only timeouts and a user agent builds"),
            opts,
            docker_config,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    pub fn docker_config(&self) -> &DockerConfig {
        &self.docker_config
    }

    pub(crate) fn concurrency(&self) -> usize {
        match self.opts.max_concurrent_transfers {
            0 => 3,
            n => n,
        }
    }

    /// Checks `username`/`password` against `registry` and, when it accepts
    /// them, stores them in Docker's config (or its credential helper).
    pub async fn login(&self, registry: &str, username: &str, password: &str) -> Result<()> {
        let creds = Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        };
        retry(
            || async {
                endpoint::verify_login(&self.http, registry, &self.opts.insecure_registries, &creds)
                    .await
                    .map_err(|e| match e {
                        e @ Error::Unreachable { .. } => Failure::transient(e),
                        e => Failure::fatal(e),
                    })
            },
            |_, _| {},
        )
        .await?;
        let config = self.docker_config.clone();
        let (registry, username, password) = (
            registry.to_string(),
            username.to_string(),
            password.to_string(),
        );
        tokio::task::spawn_blocking(move || config.store(&registry, &username, &password))
            .await
            .map_err(|e| Error::Other(format!("credential store task failed: {e}")))??;
        self.sessions.lock().await.clear();
        Ok(())
    }

    /// Forgets stored credentials for `registry`. Returns whether there were any.
    pub async fn logout(&self, registry: &str) -> Result<bool> {
        let config = self.docker_config.clone();
        let registry_owned = registry.to_string();
        let found = tokio::task::spawn_blocking(move || config.remove(&registry_owned))
            .await
            .map_err(|e| Error::Other(format!("credential store task failed: {e}")))??;
        self.sessions.lock().await.remove(registry);
        Ok(found)
    }

    /// The session for `registry`, made on first use: asks `/v2/` how to
    /// authenticate (retrying dropped connections) and loads credentials.
    pub(crate) async fn session(
        &self,
        registry: &str,
        progress: &dyn Progress,
    ) -> Result<Arc<Session>> {
        if let Some(s) = self.sessions.lock().await.get(registry) {
            return Ok(s.clone());
        }
        let challenge = retry(
            || async {
                endpoint::ping(&self.http, registry, &self.opts.insecure_registries)
                    .await
                    .map_err(|e| match e {
                        e @ Error::Unreachable { .. } => Failure::transient(e),
                        e => Failure::fatal(e),
                    })
            },
            |attempt, e| {
                progress.event(Event::Retrying {
                    digest: None,
                    attempt,
                    cause: e.to_string(),
                })
            },
        )
        .await?;
        let config = self.docker_config.clone();
        let reg = registry.to_string();
        let creds = tokio::task::spawn_blocking(move || config.credentials(&reg))
            .await
            .map_err(|e| Error::Other(format!("credential lookup task failed: {e}")))??;
        let api_host = endpoint::api_host(registry).to_string();
        let session = Arc::new(Session {
            registry: registry.to_string(),
            base: format!(
                "{}://{api_host}",
                endpoint::scheme(registry, &self.opts.insecure_registries)
            ),
            api_host,
            challenge,
            credentials: creds,
            http: self.api_http.clone(),
            limits: self.opts.limits.clone(),
            tokens: Mutex::new(HashMap::new()),
        });
        self.sessions
            .lock()
            .await
            .insert(registry.to_string(), session.clone());
        Ok(session)
    }
}
