//! `RUN --mount=…` options, parsed like BuildKit's `parseMount`: CSV fields,
//! `key=value` (values expanded), bare `ro`/`rw`/`required`, per-type keys.

use serde::Serialize;

use crate::suggest::did_you_mean;

/// Where a mount's content comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum MountFrom {
    /// Another stage, by index in the Dockerfile.
    Stage(usize),
    /// An image reference (expanded, as written).
    Image(String),
    /// The build context.
    Context,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheSharing {
    Shared,
    Private,
    Locked,
}

/// A typed, expanded `--mount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum RunMount {
    Bind {
        target: String,
        /// Path inside the source (`/` when not given).
        source: String,
        from: MountFrom,
        rw: bool,
    },
    Cache {
        target: String,
        /// Cache key; the target path when not given.
        id: String,
        sharing: CacheSharing,
        /// Seed content for an empty cache.
        from: Option<MountFrom>,
        source: String,
        mode: u32,
        uid: u32,
        gid: u32,
        readonly: bool,
    },
    Tmpfs {
        target: String,
        size: Option<u64>,
    },
    Secret {
        id: String,
        /// File path; `None` when only `env=` was given.
        target: Option<String>,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
        env: Option<String>,
    },
    Ssh {
        id: String,
        target: String,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// Not a `--mount`: a here-document run as a script (`RUN <<EOF` whose
    /// body starts with `#!`). The engine mounts a read-only directory at
    /// `dir` holding `name` (mode `mode`) with `content`.
    HeredocFile {
        dir: String,
        name: String,
        content: String,
        mode: u32,
    },
}

/// The mount fields before stage references are resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RawMount {
    pub typ: String,
    pub from: Option<String>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub readonly: Option<bool>,
    pub required: bool,
    pub size: Option<u64>,
    pub id: Option<String>,
    pub sharing: Option<String>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub env: Option<String>,
}

const KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "dest",
    "ro",
    "rw",
    "readwrite",
    "env",
];
const TYPES: &[&str] = &["bind", "cache", "tmpfs", "secret", "ssh"];

/// Go's `encoding/csv` for one record.
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    loop {
        let mut field = String::new();
        if chars.get(i) == Some(&'"') {
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("extraneous or missing \" in quoted-field".into()),
                    Some('"') if chars.get(i + 1) == Some(&'"') => {
                        field.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(c) => {
                        field.push(*c);
                        i += 1;
                    }
                }
            }
            match chars.get(i) {
                None => {
                    out.push(field);
                    return Ok(out);
                }
                Some(',') => i += 1,
                Some(_) => return Err("extraneous or missing \" in quoted-field".into()),
            }
        } else {
            while let Some(&c) = chars.get(i) {
                if c == ',' {
                    break;
                }
                if c == '"' {
                    return Err("bare \" in non-quoted-field".into());
                }
                field.push(c);
                i += 1;
            }
            let done = i >= chars.len();
            out.push(field);
            if done {
                return Ok(out);
            }
            i += 1;
        }
    }
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("invalid boolean value {v:?}")),
    }
}

/// docker/go-units `RAMInBytes`: `64m`, `1g`, `512KiB`, plain bytes.
fn ram_in_bytes(v: &str) -> Result<u64, String> {
    let lower = v.trim().to_ascii_lowercase();
    let num_len = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let num: f64 = lower[..num_len]
        .parse()
        .map_err(|_| format!("invalid size: {v:?}"))?;
    let unit = lower[num_len..]
        .trim_end_matches("ib")
        .trim_end_matches('b');
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024f64.powi(2),
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(format!("invalid size: {v:?}")),
    };
    Ok((num * mult) as u64)
}

/// Substitutes variables in one value.
pub(crate) type Expander<'a> = dyn FnMut(&str) -> Result<String, String> + 'a;

/// Parses one `--mount` value. `expand` substitutes variables in a value;
/// when it is `None` (parse time) values holding `$` are left for later.
pub(crate) fn parse(value: &str, expand: Option<&mut Expander>) -> Result<RawMount, String> {
    let fields = csv_fields(value).map_err(|e| format!("failed to parse csv mounts: {e}"))?;
    let mut m = RawMount {
        typ: "bind".into(),
        ..RawMount::default()
    };
    let mut expand = expand;
    let mut deferred = false;
    for field in fields {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
            None => (field.to_ascii_lowercase(), None),
        };
        let Some(mut val) = val else {
            match key.as_str() {
                "readonly" | "ro" => m.readonly = Some(true),
                "readwrite" | "rw" => m.readonly = Some(false),
                "required" if m.typ == "secret" || m.typ == "ssh" => m.required = true,
                "required" => {
                    return Err(format!(
                        "unexpected key 'required' for mount type '{}'",
                        m.typ
                    ))
                }
                _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
            }
            continue;
        };
        match expand.as_mut() {
            Some(f) => val = f(&val)?,
            None if key == "from" => {
                if let Some(i) = val.find('$') {
                    if i != val.len() - 1 {
                        return Err(
                            "'from' doesn't support variable expansion, define alias stage instead"
                                .into(),
                        );
                    }
                }
            }
            None if val.contains('$') => {
                deferred = true;
                if !KEYS.contains(&key.as_str()) {
                    return Err(unexpected_key(&key, &field));
                }
                continue;
            }
            None => {}
        }
        let wrong_type =
            |m: &RawMount| format!("unexpected key '{key}' for mount type '{}'", m.typ);
        match key.as_str() {
            "type" => {
                let t = val.to_ascii_lowercase();
                if !TYPES.contains(&t.as_str()) {
                    let mut msg = format!("unsupported mount type {val:?}");
                    if let Some(s) = did_you_mean(&t, TYPES.iter().copied()) {
                        msg.push_str(&format!(" (did you mean {s}?)"));
                    } else {
                        msg.push_str(" (use bind, cache, tmpfs, secret or ssh)");
                    }
                    return Err(msg);
                }
                m.typ = t;
            }
            "from" => m.from = Some(val),
            "source" | "src" => m.source = Some(val),
            "target" | "dst" | "destination" | "dest" => m.target = Some(val),
            "readonly" | "ro" => m.readonly = Some(parse_bool(&val)?),
            "readwrite" | "rw" => m.readonly = Some(!parse_bool(&val)?),
            "required" => {
                if m.typ != "secret" && m.typ != "ssh" {
                    return Err(wrong_type(&m));
                }
                m.required = parse_bool(&val)?;
            }
            "size" => {
                if m.typ != "tmpfs" {
                    return Err(wrong_type(&m));
                }
                m.size = Some(ram_in_bytes(&val)?);
            }
            "id" => m.id = Some(val),
            "sharing" => {
                if m.typ != "cache" {
                    return Err(wrong_type(&m));
                }
                let s = val.to_ascii_lowercase();
                if !matches!(s.as_str(), "shared" | "private" | "locked") {
                    return Err(format!(
                        "unsupported sharing value {val:?} (use shared, private or locked)"
                    ));
                }
                m.sharing = Some(s);
            }
            "mode" => {
                m.mode = Some(u32::from_str_radix(&val, 8).map_err(|_| {
                    format!("invalid value {val} for mode (an octal number like 0755)")
                })?)
            }
            "uid" => {
                m.uid = Some(
                    val.parse()
                        .map_err(|_| format!("invalid value {val} for uid"))?,
                )
            }
            "gid" => {
                m.gid = Some(
                    val.parse()
                        .map_err(|_| format!("invalid value {val} for gid"))?,
                )
            }
            "env" => m.env = Some(val),
            _ => return Err(unexpected_key(&key, &field)),
        }
    }
    let file_info = matches!(m.typ.as_str(), "secret" | "ssh" | "cache");
    if !file_info {
        for (set, what) in [
            (m.mode.is_some(), "mode"),
            (m.uid.is_some(), "uid"),
            (m.gid.is_some(), "gid"),
        ] {
            if set {
                return Err(format!("{what} not allowed for {:?} type mounts", m.typ));
            }
        }
    }
    if m.sharing.is_some() && m.typ != "cache" {
        return Err(format!("invalid cache sharing set for {} mount", m.typ));
    }
    if deferred {
        return Ok(m);
    }
    match m.typ.as_str() {
        "secret" => {
            if m.from.is_some() {
                return Err("secret mount should not have a from".into());
            }
            if m.source.is_none() && m.target.is_none() && m.id.is_none() && m.env.is_none() {
                return Err(
                    "invalid secret mount: one of id, source, target or env is required".into(),
                );
            }
            if m.source.is_some() && m.id.is_some() {
                return Err("both source and id can't be set".into());
            }
        }
        "bind" | "cache" | "tmpfs" if m.target.as_deref().is_none_or(str::is_empty) => {
            return Err(format!(
                "mount type={} requires a target (add target=/path)",
                m.typ
            ));
        }
        _ => {}
    }
    Ok(m)
}

fn unexpected_key(key: &str, field: &str) -> String {
    let mut msg = format!("unexpected key '{key}' in '{field}'");
    if let Some(s) = did_you_mean(key, KEYS.iter().copied()) {
        msg.push_str(&format!(" (did you mean {s}?)"));
    }
    msg
}

/// Parse-time check of a `--mount` value.
pub(crate) fn validate(value: &str) -> Result<(), String> {
    parse(value, None).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let m = parse("type=cache,target=/root/.cache,sharing=locked", None).unwrap();
        assert_eq!(m.typ, "cache");
        assert_eq!(m.sharing.as_deref(), Some("locked"));
        assert!(validate("type=cahce,target=/x")
            .unwrap_err()
            .contains("did you mean cache"));
        assert!(validate("type=bind,taget=/x")
            .unwrap_err()
            .contains("did you mean target"));
        assert!(validate("type=bind")
            .unwrap_err()
            .contains("requires a target"));
        assert!(validate("type=tmpfs,target=/t,size=64m").is_ok());
        assert!(validate("type=bind,target=/t,uid=1").is_err());
        assert!(validate("type=secret,id=tok,required").is_ok());
        assert!(validate("type=bind,target=$DIR").is_ok());
    }
}
