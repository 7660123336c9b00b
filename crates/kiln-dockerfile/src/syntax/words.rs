//! Argument splitting helpers from BuildKit's `line_parsers.go`: JSON arrays,
//! whitespace lists, and quote-aware words for ENV/LABEL/ARG.

/// Why an argument string is not an exec-form array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// Does not start with `[` (plain shell form).
    NotJson,
    /// Starts with `[` but is not valid JSON; BuildKit falls back to shell form.
    Invalid(String),
    /// A valid array with non-string members: an error in BuildKit.
    NotStrings,
}

/// `parseJSON`: the first JSON value of `rest` (trailing text is ignored, as
/// Go's `json.Decoder` does) must be an array of strings.
pub fn parse_json(rest: &str) -> Result<Vec<String>, JsonError> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Err(JsonError::NotJson);
    }
    let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
    match stream.next() {
        Some(Ok(serde_json::Value::Array(items))) => items
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(s),
                _ => Err(JsonError::NotStrings),
            })
            .collect(),
        Some(Ok(_)) => Err(JsonError::Invalid("not an array".into())),
        Some(Err(e)) => Err(JsonError::Invalid(e.to_string())),
        None => Err(JsonError::Invalid("empty".into())),
    }
}

/// `reWhitespace.Split(rest, -1)` for non-empty input.
pub fn split_ws(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    rest.split(['\t', '\x0b', '\x0c', '\r', ' '])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `parseMaybeJSONToList`: a JSON string array or whitespace-separated words.
/// Returns the list and whether it was JSON.
pub fn maybe_json_list(rest: &str) -> Result<(Vec<String>, bool), String> {
    match parse_json(rest) {
        Ok(v) => Ok((v, true)),
        Err(JsonError::NotStrings) => {
            Err("when using JSON array syntax, arrays must be comprised of strings only".into())
        }
        Err(_) => Ok((split_ws(rest), false)),
    }
}

/// `parseWords`: words separated by white space; quotes keep spaces and stay
/// in the word (they are removed at expansion time).
pub fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= chars.len() {
        let end = pos == chars.len();
        let mut ch = if end { '\0' } else { chars[pos] };
        if phase == Phase::Spaces {
            if end {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if end {
            if blank_ok || !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                word.push(ch);
                pos += 1;
                ch = chars[pos];
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // in a quote
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if pos + 1 == chars.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            word.push(ch);
            ch = chars[pos];
        }
        word.push(ch);
        pos += 1;
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_forms() {
        assert_eq!(
            parse_json(r#"["a", "b"]"#),
            Ok(vec!["a".into(), "b".into()])
        );
        assert_eq!(parse_json(r#"["a"] trailing"#), Ok(vec!["a".into()]));
        assert_eq!(parse_json("[1]"), Err(JsonError::NotStrings));
        assert!(matches!(parse_json("['a']"), Err(JsonError::Invalid(_))));
        assert_eq!(parse_json("echo"), Err(JsonError::NotJson));
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            parse_words(r#"A="x y" B=z\ w C"#, '\\'),
            vec![r#"A="x y""#, r"B=z\ w", "C"]
        );
    }
}
