//! How much kiln reads from a registry and how long it waits: a registry is
//! untrusted input, so every response is bounded in size (documents) or
//! speed (blobs). Defaults are documented in `docs/security.md`; the
//! `KILN_REGISTRY_*` environment variables override them (slow links, tests).

use std::time::Duration;

/// Limits on what kiln reads from registries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest manifest, index, image config or token reply kiln reads
    /// (containerd's manifest limit): 4 MiB.
    pub max_document: u64,
    /// Longest wait for the next bytes of a response (headers or body): 30 s.
    pub idle_timeout: Duration,
    /// A body slower than `low_speed_limit` bytes/s on average over
    /// `low_speed_time` is given up (as curl's `--speed-limit`/`--speed-time`):
    /// 1 KiB/s over 30 s.
    pub low_speed_limit: u64,
    pub low_speed_time: Duration,
}

pub const DEFAULT_MAX_DOCUMENT: u64 = 4 << 20;

impl Default for Limits {
    /// The documented defaults, with `KILN_REGISTRY_MAX_DOCUMENT` (bytes),
    /// `KILN_REGISTRY_IDLE_TIMEOUT`, `KILN_REGISTRY_LOW_SPEED_TIME`
    /// (seconds, fractions allowed) and `KILN_REGISTRY_LOW_SPEED_LIMIT`
    /// (bytes/s) applied when set.
    fn default() -> Limits {
        let mut l = Limits {
            max_document: DEFAULT_MAX_DOCUMENT,
            idle_timeout: Duration::from_secs(30),
            low_speed_limit: 1024,
            low_speed_time: Duration::from_secs(30),
        };
        if let Some(n) = env_number("KILN_REGISTRY_MAX_DOCUMENT") {
            l.max_document = n as u64;
        }
        if let Some(s) = env_number("KILN_REGISTRY_IDLE_TIMEOUT") {
            l.idle_timeout = Duration::from_secs_f64(s);
        }
        if let Some(s) = env_number("KILN_REGISTRY_LOW_SPEED_TIME") {
            l.low_speed_time = Duration::from_secs_f64(s);
        }
        if let Some(n) = env_number("KILN_REGISTRY_LOW_SPEED_LIMIT") {
            l.low_speed_limit = n as u64;
        }
        l
    }
}

/// A positive number from the environment; anything else is ignored with a
/// warning (a typo must not silently remove a limit).
fn env_number(name: &str) -> Option<f64> {
    let raw = std::env::var(name).ok()?;
    match raw.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Some(v),
        _ => {
            tracing::warn!("ignoring {name}={raw:?}: not a positive number");
            None
        }
    }
}

/// `4194304` → `4 MiB`, for messages.
pub fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}
