//! Bounded retries with exponential backoff for transient failures (dropped
//! connections, stalls, 5xx, 429), and the translation of HTTP statuses into
//! kiln's errors, which decides what is transient.

use std::future::Future;
use std::time::Duration;

use crate::error::Error;

/// Tries per operation: the first and three retries.
pub const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// A failed attempt and whether trying again could help.
#[derive(Debug)]
pub struct Failure {
    pub error: Error,
    pub transient: bool,
}

impl Failure {
    pub fn fatal(error: Error) -> Failure {
        Failure {
            error,
            transient: false,
        }
    }
    pub fn transient(error: Error) -> Failure {
        Failure {
            error,
            transient: true,
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::fatal(error)
    }
}

impl From<kiln_store::Error> for Failure {
    fn from(error: kiln_store::Error) -> Failure {
        Failure::fatal(error.into())
    }
}

/// Runs `op` up to [`ATTEMPTS`] times while it fails transiently, waiting
/// 200 ms, 400 ms, 800 ms between tries. `on_retry(attempt, cause)` is told
/// before each new try.
pub async fn retry<T, F, Fut>(mut op: F, on_retry: impl Fn(u32, &Error)) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1.. {
        match op().await {
            Ok(v) => return Ok(v),
            Err(f) if f.transient && attempt < ATTEMPTS => {
                tracing::debug!(attempt, error = %f.error, "transient registry failure, retrying");
                on_retry(attempt + 1, &f.error);
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(f) => return Err(f.error),
        }
    }
    unreachable!("the loop returns")
}

/// What an operation was doing, for error messages.
pub struct Context<'a> {
    pub registry: &'a str,
    /// `registry/repository[:tag|@digest]`
    pub name: &'a str,
    pub action: &'a str,
}

pub(crate) fn status_failure(code: u16, message: String, cx: &Context<'_>) -> Failure {
    let message = message.trim().to_string();
    match code {
        401 => Failure::fatal(Error::Unauthorized {
            registry: cx.registry.to_string(),
        }),
        403 => Failure::fatal(Error::Denied {
            registry: cx.registry.to_string(),
            name: cx.name.to_string(),
            cause: format!("HTTP 403 {message}"),
        }),
        404 if cx.action == "pull" => Failure::fatal(Error::ManifestUnknown {
            reference: cx.name.to_string(),
        }),
        c => {
            let e = Error::Refused {
                registry: cx.registry.to_string(),
                action: format!("{} {}", cx.action, cx.name),
                cause: if message.is_empty() {
                    format!("HTTP {c}")
                } else {
                    format!("HTTP {c}: {message}")
                },
            };
            if c == 429 || c >= 500 {
                Failure::transient(e)
            } else {
                Failure::fatal(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn err() -> Error {
        Error::Other("x".into())
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_failures_a_bounded_number_of_times() {
        let calls = AtomicU32::new(0);
        let retries = AtomicU32::new(0);
        let r: Result<(), Error> = retry(
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Failure::transient(err()))
            },
            |_, _| {
                retries.fetch_add(1, Ordering::SeqCst);
            },
        )
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), ATTEMPTS);
        assert_eq!(retries.load(Ordering::SeqCst), ATTEMPTS - 1);
    }

    #[tokio::test(start_paused = true)]
    async fn fatal_failures_are_not_retried_and_success_stops() {
        let calls = AtomicU32::new(0);
        let r: Result<(), Error> = retry(
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Failure::fatal(err()))
            },
            |_, _| {},
        )
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let r = retry(
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if n == 0 {
                    Err(Failure::transient(err()))
                } else {
                    Ok(n)
                }
            },
            |_, _| {},
        )
        .await;
        assert_eq!(r.unwrap(), 1);
    }

    #[test]
    fn status_codes_are_classified() {
        let cx = Context {
            registry: "r:1",
            name: "r:1/a:b",
            action: "pull",
        };
        let f = status_failure(401, String::new(), &cx);
        assert!(!f.transient);
        assert_eq!(
            f.error.to_string(),
            "authentication failed for r:1: check `kiln login`"
        );
        assert!(status_failure(503, String::new(), &cx).transient);
        assert!(status_failure(429, String::new(), &cx).transient);
        assert!(!status_failure(400, String::new(), &cx).transient);
        assert!(matches!(
            status_failure(404, String::new(), &cx).error,
            Error::ManifestUnknown { .. }
        ));
    }
}
