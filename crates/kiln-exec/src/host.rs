//! The `/etc/resolv.conf` and `/etc/hosts` a container sees, made the way
//! BuildKit makes them: a copy of the host's resolver configuration (without
//! loopback name servers when the container has its own network namespace)
//! and a hosts file with `localhost` and the container's hostname.

use std::path::Path;

use crate::{Error, Network, Result};

/// Used when the host's resolv.conf is missing or lists only loopback
/// servers that a container with its own network cannot reach (BuildKit and
/// Docker fall back to the same).
const DEFAULT_NAMESERVERS: &str = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n";

/// systemd-resolved's list of the real upstream servers, used instead of the
/// stub `127.0.0.53` configuration, as Docker does.
const RESOLVED_UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";

pub(crate) fn resolv_conf(network: Network) -> Result<String> {
    let host = read_optional(Path::new("/etc/resolv.conf"))?;
    let host = match host {
        Some(text) if only_loopback_servers(&text) => {
            read_optional(Path::new(RESOLVED_UPSTREAM))?.or(Some(text))
        }
        other => other,
    };
    let text = host.unwrap_or_default();
    Ok(match network {
        Network::Host => {
            if text.trim().is_empty() {
                DEFAULT_NAMESERVERS.to_string()
            } else {
                text
            }
        }
        Network::None => without_loopback_servers(&text),
    })
}

pub(crate) fn hosts(hostname: &str) -> String {
    let name = if hostname.is_empty() {
        String::new()
    } else {
        format!(" {hostname}")
    };
    format!("127.0.0.1\tlocalhost{name}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading", path, e)),
    }
}

fn nameserver(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    (words.next() == Some("nameserver"))
        .then(|| words.next())
        .flatten()
}

fn is_loopback(addr: &str) -> bool {
    addr.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

fn only_loopback_servers(text: &str) -> bool {
    let servers: Vec<&str> = text.lines().filter_map(nameserver).collect();
    !servers.is_empty() && servers.iter().all(|s| is_loopback(s))
}

/// Drops loopback name servers (unreachable from another network namespace);
/// when none is left, uses the public defaults.
fn without_loopback_servers(text: &str) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for line in text.lines() {
        match nameserver(line) {
            Some(addr) if is_loopback(addr) => continue,
            Some(_) => servers += 1,
            None => {}
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        out.push_str(DEFAULT_NAMESERVERS);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_names_localhost_and_hostname() {
        let h = hosts("box");
        assert!(h.starts_with("127.0.0.1\tlocalhost box\n"));
        assert!(h.contains("::1\tlocalhost ip6-localhost ip6-loopback"));
        assert_eq!(hosts("").lines().next(), Some("127.0.0.1\tlocalhost"));
    }

    #[test]
    fn loopback_servers_are_replaced_without_host_network() {
        let text = "search example.com\nnameserver 127.0.0.53\noptions edns0\n";
        let out = without_loopback_servers(text);
        assert!(!out.contains("127.0.0.53"));
        assert!(out.contains("search example.com"));
        assert!(out.contains("nameserver 8.8.8.8"));
        let kept = without_loopback_servers("nameserver 10.0.0.1\nnameserver ::1\n");
        assert_eq!(kept, "nameserver 10.0.0.1\n");
        assert!(only_loopback_servers("nameserver 127.0.0.53\n"));
        assert!(!only_loopback_servers(
            "nameserver 127.0.0.53\nnameserver 1.1.1.1\n"
        ));
    }
}
