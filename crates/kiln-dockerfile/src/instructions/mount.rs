//! `RUN --mount=…` options, parsed like BuildKit's `parseMount`: CSV fields,
//! `key=value` (values expanded), bare `ro`/`rw`/`required`, per-type keys.
//! Stage references are resolved when lowering (`crate::lower::mount`).

use crate::suggest::did_you_mean;

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
            m.set_bare(&key, &field)?;
            continue;
        };
        match expand.as_mut() {
            Some(f) => val = f(&val)?,
            None if key == "from" => check_from_unexpanded(&val)?,
            None if val.contains('$') => {
                deferred = true;
                if !KEYS.contains(&key.as_str()) {
                    return Err(unexpected_key(&key, &field));
                }
                continue;
            }
            None => {}
        }
        m.set(&key, val, &field)?;
    }
    m.check_fields()?;
    if !deferred {
        m.check_type()?;
    }
    Ok(m)
}

/// `from=` is not expanded (BuildKit: define an alias stage instead).
fn check_from_unexpanded(val: &str) -> Result<(), String> {
    match val.find('$') {
        Some(i) if i != val.len() - 1 => {
            Err("'from' doesn't support variable expansion, define alias stage instead".into())
        }
        _ => Ok(()),
    }
}

impl RawMount {
    /// A field without `=`: `ro`, `rw`, `required`.
    fn set_bare(&mut self, key: &str, field: &str) -> Result<(), String> {
        match key {
            "readonly" | "ro" => self.readonly = Some(true),
            "readwrite" | "rw" => self.readonly = Some(false),
            "required" if self.typ == "secret" || self.typ == "ssh" => self.required = true,
            "required" => return Err(self.wrong_type(key)),
            _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
        }
        Ok(())
    }

    fn wrong_type(&self, key: &str) -> String {
        format!("unexpected key '{key}' for mount type '{}'", self.typ)
    }

    /// `key=val`, one option.
    fn set(&mut self, key: &str, val: String, field: &str) -> Result<(), String> {
        match key {
            "type" => self.set_type(&val)?,
            "from" => self.from = Some(val),
            "source" | "src" => self.source = Some(val),
            "target" | "dst" | "destination" | "dest" => self.target = Some(val),
            "readonly" | "ro" => self.readonly = Some(parse_bool(&val)?),
            "readwrite" | "rw" => self.readonly = Some(!parse_bool(&val)?),
            "required" => self.set_required(key, &val)?,
            "size" => self.set_size(key, &val)?,
            "id" => self.id = Some(val),
            "sharing" => self.set_sharing(key, &val)?,
            "mode" => {
                self.mode = Some(u32::from_str_radix(&val, 8).map_err(|_| {
                    format!("invalid value {val} for mode (an octal number like 0755)")
                })?)
            }
            "uid" => self.uid = Some(parse_id(&val, "uid")?),
            "gid" => self.gid = Some(parse_id(&val, "gid")?),
            "env" => self.env = Some(val),
            _ => return Err(unexpected_key(key, field)),
        }
        Ok(())
    }

    fn set_type(&mut self, val: &str) -> Result<(), String> {
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
        self.typ = t;
        Ok(())
    }

    fn set_required(&mut self, key: &str, val: &str) -> Result<(), String> {
        if self.typ != "secret" && self.typ != "ssh" {
            return Err(self.wrong_type(key));
        }
        self.required = parse_bool(val)?;
        Ok(())
    }

    fn set_size(&mut self, key: &str, val: &str) -> Result<(), String> {
        if self.typ != "tmpfs" {
            return Err(self.wrong_type(key));
        }
        self.size = Some(ram_in_bytes(val)?);
        Ok(())
    }

    fn set_sharing(&mut self, key: &str, val: &str) -> Result<(), String> {
        if self.typ != "cache" {
            return Err(self.wrong_type(key));
        }
        let s = val.to_ascii_lowercase();
        if !matches!(s.as_str(), "shared" | "private" | "locked") {
            return Err(format!(
                "unsupported sharing value {val:?} (use shared, private or locked)"
            ));
        }
        self.sharing = Some(s);
        Ok(())
    }

    /// Options that only some types take.
    fn check_fields(&self) -> Result<(), String> {
        let file_info = matches!(self.typ.as_str(), "secret" | "ssh" | "cache");
        if !file_info {
            for (set, what) in [
                (self.mode.is_some(), "mode"),
                (self.uid.is_some(), "uid"),
                (self.gid.is_some(), "gid"),
            ] {
                if set {
                    return Err(format!("{what} not allowed for {:?} type mounts", self.typ));
                }
            }
        }
        if self.sharing.is_some() && self.typ != "cache" {
            return Err(format!("invalid cache sharing set for {} mount", self.typ));
        }
        Ok(())
    }

    /// What each type requires (checked once values are expanded).
    fn check_type(&self) -> Result<(), String> {
        match self.typ.as_str() {
            "secret" => {
                if self.from.is_some() {
                    return Err("secret mount should not have a from".into());
                }
                if self.source.is_none()
                    && self.target.is_none()
                    && self.id.is_none()
                    && self.env.is_none()
                {
                    return Err(
                        "invalid secret mount: one of id, source, target or env is required".into(),
                    );
                }
                if self.source.is_some() && self.id.is_some() {
                    return Err("both source and id can't be set".into());
                }
            }
            "bind" | "cache" | "tmpfs" if self.target.as_deref().is_none_or(str::is_empty) => {
                return Err(format!(
                    "mount type={} requires a target (add target=/path)",
                    self.typ
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

fn parse_id(val: &str, what: &str) -> Result<u32, String> {
    val.parse()
        .map_err(|_| format!("invalid value {val} for {what}"))
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
