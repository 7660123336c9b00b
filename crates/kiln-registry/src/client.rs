//! The registry client: one `oci-client` session per registry, set up with
//! the registry's scheme (HTTP for loopback and `--insecure-registry`) and
//! the credentials Docker's config holds for it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use tokio::sync::Mutex;

use crate::config::{Credentials, DockerConfig};
use crate::endpoint::{self, Challenge};
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::progress::{Event, Progress};
use crate::retry::{retry, Failure};

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
    http: reqwest::Client,
    /// Follows no redirects: pulls follow them themselves, to blame the
    /// right host and keep credentials from other hosts.
    pull_http: reqwest::Client,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

/// What is known about one registry after the first contact. Pushes go
/// through `oci`; pulls through kiln's bounded transport (`transport.rs`).
pub(crate) struct Session {
    pub oci: oci_client::Client,
    pub registry: String,
    /// `http[s]://host[:port]` the API is served from.
    pub base: String,
    pub api_host: String,
    pub challenge: Challenge,
    pub credentials: Credentials,
    pub http: reqwest::Client,
    pub limits: Limits,
    /// Bearer tokens by scope.
    pub tokens: Mutex<HashMap<String, String>>,
}

impl Client {
    pub fn new(opts: ClientOptions) -> Client {
        crate::install_crypto_provider();
        let docker_config = DockerConfig::locate(opts.docker_config.as_deref());
        Client {
            http: endpoint::http_client(&opts.limits),
            pull_http: endpoint::http_client_builder(&opts.limits)
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

    pub(crate) fn is_insecure(&self, registry: &str) -> bool {
        endpoint::is_insecure(registry, &self.opts.insecure_registries)
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
        let auth = match &creds {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
        };
        let protocol = if self.is_insecure(registry) {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let oci = oci_client::Client::new(ClientConfig {
            protocol,
            // One PUT per blob: fewer round trips, and the body streams from
            // the store file with its known size.
            use_monolithic_push: true,
            platform_resolver: None,
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            // No read_timeout: reqwest's runs from the start of a request
            // to the reply, so it would cut long uploads. push.rs bounds
            // each request and watches upload speed itself.
            ..ClientConfig::default()
        });
        // An open registry needs no auth handling at all; registering auth
        // would make oci-client probe `/v2/` before every request.
        if challenge != Challenge::None {
            let host = oci_reference(registry, "library/x", "latest")?;
            oci.store_auth_if_needed(host.resolve_registry(), &auth)
                .await;
        }
        let api_host = endpoint::api_host(registry).to_string();
        let session = Arc::new(Session {
            oci,
            registry: registry.to_string(),
            base: format!(
                "{}://{api_host}",
                endpoint::scheme(registry, &self.opts.insecure_registries)
            ),
            api_host,
            challenge,
            credentials: creds,
            http: self.pull_http.clone(),
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

/// An `oci-client` reference for `registry/repository:tag`.
pub(crate) fn oci_reference(
    registry: &str,
    repository: &str,
    tag: &str,
) -> Result<oci_client::Reference> {
    Ok(oci_client::Reference::with_tag(
        registry.to_string(),
        repository.to_string(),
        tag.to_string(),
    ))
}

/// An `oci-client` reference for `registry/repository@digest`.
pub(crate) fn oci_digest_reference(
    registry: &str,
    repository: &str,
    digest: &kiln_oci::Digest,
) -> oci_client::Reference {
    oci_client::Reference::with_digest(
        registry.to_string(),
        repository.to_string(),
        digest.to_string(),
    )
}
