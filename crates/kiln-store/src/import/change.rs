//! `--change` instructions of `kiln import` (as `docker import --change`):
//! CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL, VOLUME, STOPSIGNAL,
//! applied to a config's `config` object.

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

/// Applies one `--change` line to `config` (the image config's `config`).
pub fn apply_change(config: &mut Map<String, Value>, change: &str) -> Result<()> {
    let bad = |reason: &str| Error::invalid(format!("--change {change:?}"), reason);
    let line = change.trim();
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    if rest.is_empty() {
        return Err(bad("missing arguments"));
    }
    match word.to_ascii_uppercase().as_str() {
        "CMD" => {
            config.insert("Cmd".into(), json!(command(rest)));
        }
        "ENTRYPOINT" => {
            config.insert("Entrypoint".into(), json!(command(rest)));
        }
        "ENV" => {
            let env = config.entry("Env").or_insert_with(|| json!([]));
            let list = env.as_array_mut().ok_or_else(|| bad("Env is not a list"))?;
            for (k, v) in pairs(rest).map_err(|r| bad(&r))? {
                list.retain(|e| e.as_str().and_then(|e| e.split_once('=')).map(|p| p.0) != Some(&k));
                list.push(json!(format!("{k}={v}")));
            }
        }
        "LABEL" => {
            let labels = config.entry("Labels").or_insert_with(|| json!({}));
            let map = labels.as_object_mut().ok_or_else(|| bad("Labels is not a map"))?;
            for (k, v) in pairs(rest).map_err(|r| bad(&r))? {
                map.insert(k, json!(v));
            }
        }
        "WORKDIR" => {
            config.insert("WorkingDir".into(), json!(rest));
        }
        "USER" => {
            config.insert("User".into(), json!(rest));
        }
        "STOPSIGNAL" => {
            config.insert("StopSignal".into(), json!(rest));
        }
        "EXPOSE" => {
            let ports = config.entry("ExposedPorts").or_insert_with(|| json!({}));
            let map = ports.as_object_mut().ok_or_else(|| bad("ExposedPorts is not a map"))?;
            for p in rest.split_whitespace() {
                let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                if num.parse::<u16>().is_err() || !matches!(proto, "tcp" | "udp" | "sctp") {
                    return Err(bad(&format!("invalid port {p:?}")));
                }
                map.insert(format!("{num}/{proto}"), json!({}));
            }
        }
        "VOLUME" => {
            let vols = config.entry("Volumes").or_insert_with(|| json!({}));
            let map = vols.as_object_mut().ok_or_else(|| bad("Volumes is not a map"))?;
            let list = match serde_json::from_str::<Vec<String>>(rest) {
                Ok(v) => v,
                Err(_) => rest.split_whitespace().map(str::to_string).collect(),
            };
            for v in list {
                map.insert(v, json!({}));
            }
        }
        other => {
            return Err(bad(&format!(
                "{other} is not supported (use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR)"
            )))
        }
    }
    Ok(())
}

/// JSON (exec) form as is; shell form wrapped in `/bin/sh -c`.
fn command(rest: &str) -> Vec<String> {
    if rest.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(rest) {
            return v;
        }
    }
    vec!["/bin/sh".into(), "-c".into(), rest.into()]
}

/// `k=v k2="a b"` pairs, or the legacy `k v with spaces` form.
fn pairs(rest: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let words = split_words(rest)?;
    if !words.first().is_some_and(|w| w.contains('=')) {
        let (k, v) = rest
            .split_once(char::is_whitespace)
            .ok_or("expected KEY=VALUE")?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("expected KEY=VALUE, got {w:?}")),
        })
        .collect()
}

/// Splits on whitespace outside quotes, removing quotes and backslashes.
fn split_words(s: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                cur.push(chars.next().ok_or("trailing backslash")?);
                in_word = true;
            }
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_every_supported_change() {
        let mut c = Map::new();
        for ch in [
            r#"CMD ["echo", "hi"]"#,
            "ENTRYPOINT /bin/app --flag",
            r#"ENV A=1 B="two words""#,
            "ENV LEGACY some value",
            "ENV A=3",
            "WORKDIR /srv",
            "USER 1000:1000",
            "EXPOSE 80 53/udp",
            r#"LABEL org.x="y z""#,
            r#"VOLUME ["/data"]"#,
            "STOPSIGNAL SIGINT",
        ] {
            apply_change(&mut c, ch).unwrap_or_else(|e| panic!("{ch}: {e}"));
        }
        let v = Value::Object(c);
        assert_eq!(v["Cmd"], json!(["echo", "hi"]));
        assert_eq!(v["Entrypoint"], json!(["/bin/sh", "-c", "/bin/app --flag"]));
        assert_eq!(v["Env"], json!(["B=two words", "LEGACY=some value", "A=3"]));
        assert_eq!(v["WorkingDir"], "/srv");
        assert_eq!(v["User"], "1000:1000");
        assert_eq!(v["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(v["Labels"], json!({"org.x": "y z"}));
        assert_eq!(v["Volumes"], json!({"/data": {}}));
        assert_eq!(v["StopSignal"], "SIGINT");
    }

    #[test]
    fn rejects_bad_changes() {
        let mut c = Map::new();
        for ch in ["RUN echo", "CMD", "EXPOSE http", "ENV A=\"x"] {
            let e = apply_change(&mut c, ch).unwrap_err().to_string();
            assert!(e.contains(&format!("{ch:?}")), "{e}");
        }
    }
}
