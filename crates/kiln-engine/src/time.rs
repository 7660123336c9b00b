//! Timestamps in image configs: RFC 3339 in UTC, from `SOURCE_DATE_EPOCH`
//! when it is set (reproducible builds).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_rfc3339() -> String {
    let time = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
        .unwrap_or_else(SystemTime::now);
    humantime::format_rfc3339_seconds(time).to_string()
}
