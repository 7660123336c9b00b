//! EXPOSE port specs (docker/go-connections `nat.ParsePortSpecs`), returned
//! as sorted, de-duplicated config keys (`80/tcp`).

/// Parses `80`, `80/udp`, `8000-8002/tcp`, `127.0.0.1:80:80`.
pub(crate) fn parse_port_specs(specs: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for raw in specs {
        let (port_part, proto) = match raw.rsplit_once('/') {
            Some((p, proto)) => (p, proto.to_ascii_lowercase()),
            None => (raw.as_str(), "tcp".to_string()),
        };
        if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
            return Err(format!("invalid proto: {proto}"));
        }
        // ip:hostPort:containerPort — only the container port is exposed.
        let container = port_part.rsplit(':').next().unwrap_or(port_part);
        let (start, end) = match container.split_once('-') {
            Some((a, b)) => (parse_port(a, raw)?, parse_port(b, raw)?),
            None => {
                let p = parse_port(container, raw)?;
                (p, p)
            }
        };
        if end < start {
            return Err(format!("invalid range specified for container port: {raw}"));
        }
        for p in start..=end {
            let key = format!("{p}/{proto}");
            if !out.contains(&key) {
                out.push(key);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn parse_port(p: &str, raw: &str) -> Result<u32, String> {
    match p.parse::<u32>() {
        Ok(n) if n <= 65535 => Ok(n),
        _ => Err(format!("invalid containerPort: {raw}")),
    }
}
