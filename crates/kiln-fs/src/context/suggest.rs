//! "Did you mean" for a COPY source that is not in the context.

/// Names within a small edit distance of `wanted`, closest first (at most 3).
pub fn close_names(wanted: &str, names: &[String]) -> Vec<String> {
    if wanted.is_empty() {
        return Vec::new();
    }
    let limit = (wanted.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &String)> = names
        .iter()
        .map(|n| (distance(wanted, n), n))
        // The same name back helps nobody (it exists but was not usable).
        .filter(|(d, _)| *d > 0 && *d <= limit)
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, n)| n.clone()).collect()
}

/// Levenshtein distance over characters; case differences cost 1 like any
/// other substitution.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("same", "same"), 0);
    }

    #[test]
    fn suggests_close_names_only() {
        let names = vec![
            "main.go".to_string(),
            "go.mod".to_string(),
            "README.md".to_string(),
        ];
        assert_eq!(close_names("mian.go", &names), vec!["main.go"]);
        assert!(close_names("Dockerfile", &names).is_empty());
        assert!(close_names("go.mod", &names).is_empty());
    }
}
