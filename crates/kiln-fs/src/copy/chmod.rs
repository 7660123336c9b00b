//! `COPY --chmod`: octal (`0755`, `755`, up to `7777` with setuid/setgid/
//! sticky, which BuildKit 0.13+ keeps) or symbolic (`u+x,go-w`, `a=rX`,
//! BuildKit 1.14+ syntax, applied to each file's own mode like chmod(1)).

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chmod {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clause {
    /// Bits of the classes named (`u`, `g`, `o`; none or `a` = all).
    who: u32,
    ops: Vec<(char, u32, bool)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --chmod={spec:?}: {why}")]
pub struct ChmodError {
    pub spec: String,
    pub why: String,
}

const USER: u32 = 0o4700;
const GROUP: u32 = 0o2070;
const OTHER: u32 = 0o1007;

impl Chmod {
    pub fn parse(spec: &str) -> Result<Chmod, ChmodError> {
        let err = |why: &str| ChmodError {
            spec: spec.to_string(),
            why: why.to_string(),
        };
        if spec.is_empty() {
            return Err(err("empty mode"));
        }
        if spec.bytes().all(|b| b.is_ascii_digit()) {
            let mode =
                u32::from_str_radix(spec, 8).map_err(|_| err("octal mode has a digit 8 or 9"))?;
            if mode > 0o7777 {
                return Err(err("octal mode is larger than 7777"));
            }
            return Ok(Chmod::Octal(mode));
        }
        let mut clauses = Vec::new();
        for part in spec.split(',') {
            let mut chars = part.chars().peekable();
            let mut who = 0;
            while let Some(&c) = chars.peek() {
                who |= match c {
                    'u' => USER,
                    'g' => GROUP,
                    'o' => OTHER,
                    'a' => USER | GROUP | OTHER,
                    _ => break,
                };
                chars.next();
            }
            let mut ops = Vec::new();
            while let Some(op) = chars.next() {
                if !matches!(op, '+' | '-' | '=') {
                    return Err(err(&format!(
                        "expected +, - or = in {part:?}, found {op:?}"
                    )));
                }
                let mut bits = 0;
                let mut cond_x = false;
                while let Some(&c) = chars.peek() {
                    match c {
                        'r' => bits |= 0o444,
                        'w' => bits |= 0o222,
                        'x' => bits |= 0o111,
                        'X' => cond_x = true,
                        's' => bits |= 0o6000,
                        't' => bits |= 0o1000,
                        '+' | '-' | '=' => break,
                        other => return Err(err(&format!("unknown permission {other:?}"))),
                    }
                    chars.next();
                }
                ops.push((op, bits, cond_x));
            }
            if ops.is_empty() {
                return Err(err(&format!("clause {part:?} has no +, - or =")));
            }
            clauses.push(Clause { who, ops });
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The mode (permission and special bits) for an entry whose current
    /// mode is `mode`.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(m) => *m,
            Chmod::Symbolic(clauses) => {
                let mut m = mode & 0o7777;
                for c in clauses {
                    // No class given: all classes (umask is not applied, as BuildKit).
                    let who = if c.who == 0 {
                        USER | GROUP | OTHER
                    } else {
                        c.who
                    };
                    for &(op, bits, cond_x) in &c.ops {
                        let mut b = bits;
                        if cond_x && (is_dir || m & 0o111 != 0) {
                            b |= 0o111;
                        }
                        let b = b & who;
                        match op {
                            '+' => m |= b,
                            '-' => m &= !b,
                            _ => m = (m & !(who & 0o7777)) | b,
                        }
                    }
                }
                m
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal() {
        assert_eq!(Chmod::parse("755").unwrap().apply(0o600, false), 0o755);
        assert_eq!(Chmod::parse("04755").unwrap().apply(0, false), 0o4755);
        assert!(Chmod::parse("0888").is_err());
        assert!(Chmod::parse("17777").is_err());
    }

    #[test]
    fn symbolic() {
        let p = |s: &str| Chmod::parse(s).unwrap();
        assert_eq!(p("u+x").apply(0o644, false), 0o744);
        assert_eq!(p("go-w").apply(0o666, false), 0o644);
        assert_eq!(p("a=rX").apply(0o600, false), 0o444);
        assert_eq!(p("a=rX").apply(0o700, false), 0o555);
        assert_eq!(p("a=rX").apply(0o700, true), 0o555);
        assert_eq!(p("u=rwx,g=rx,o=").apply(0o777, false), 0o750);
        assert_eq!(p("+x").apply(0o644, false), 0o755);
        assert_eq!(p("u+s").apply(0o755, false), 0o4755);
        assert_eq!(p("o+t").apply(0o777, true), 0o1777);
        assert!(Chmod::parse("u*x").is_err());
        assert!(Chmod::parse("z+x").is_err());
        assert!(Chmod::parse("u").is_err());
    }
}
