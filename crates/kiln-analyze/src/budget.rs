//! CI gates: `--max-size`, `--min-efficiency`, `--max-wasted`. A failed
//! gate carries the breakdown that explains it (the biggest layers, the
//! biggest wasted files).

use crate::report::{human_size, Analysis};

#[derive(Debug, Clone, Copy, Default)]
pub struct Budget {
    /// Limit on the uncompressed image size (the sum of its layer tars).
    pub max_size: Option<u64>,
    pub min_efficiency: Option<f64>,
    pub max_wasted: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct BudgetFailure {
    pub gate: &'static str,
    /// "image size 12.3MB exceeds --max-size 10MB"
    pub message: String,
    /// The lines that explain where the bytes are.
    pub breakdown: Vec<String>,
}

impl Budget {
    pub fn is_empty(&self) -> bool {
        self.max_size.is_none() && self.min_efficiency.is_none() && self.max_wasted.is_none()
    }

    pub fn check(&self, a: &Analysis) -> Vec<BudgetFailure> {
        let t = &a.totals;
        let mut out = Vec::new();
        if let Some(max) = self.max_size.filter(|m| t.uncompressed > *m) {
            out.push(BudgetFailure {
                gate: "max-size",
                message: format!(
                    "image size {} ({} bytes) exceeds --max-size {} ({max} bytes)",
                    human_size(t.uncompressed),
                    t.uncompressed,
                    human_size(max)
                ),
                breakdown: biggest_layers(a),
            });
        }
        if let Some(min) = self.min_efficiency.filter(|m| t.efficiency < *m) {
            out.push(BudgetFailure {
                gate: "min-efficiency",
                message: format!(
                    "efficiency {:.4} is below --min-efficiency {min}: {} of {} shipped bytes are wasted",
                    t.efficiency, t.wasted, t.shipped
                ),
                breakdown: biggest_waste(a),
            });
        }
        if let Some(max) = self.max_wasted.filter(|m| t.wasted > *m) {
            out.push(BudgetFailure {
                gate: "max-wasted",
                message: format!(
                    "wasted {} ({} bytes) exceeds --max-wasted {} ({max} bytes)",
                    human_size(t.wasted),
                    t.wasted,
                    human_size(max)
                ),
                breakdown: biggest_waste(a),
            });
        }
        out
    }
}

fn biggest_layers(a: &Analysis) -> Vec<String> {
    let mut layers: Vec<_> = a.layers.iter().collect();
    layers.sort_by_key(|l| std::cmp::Reverse(l.uncompressed));
    layers
        .iter()
        .take(5)
        .map(|l| {
            format!(
                "layer {} {:>9}  {}",
                l.index,
                human_size(l.uncompressed),
                crate::report::short_command(&l.created_by, 70)
            )
        })
        .collect()
}

fn biggest_waste(a: &Analysis) -> Vec<String> {
    let t = &a.totals;
    let mut lines = vec![format!(
        "deleted {} B, overwritten {} B, metadata-only copy-ups {} B",
        t.wasted_deleted, t.wasted_overwritten, t.wasted_metadata_only
    )];
    lines.extend(a.waste.iter().take(5).map(|w| {
        format!(
            "{:>9}  {} (added in layer {}, {} in layer {})",
            human_size(w.size),
            w.path,
            w.added_in,
            w.reason.verb(),
            w.removed_in
        )
    }));
    lines
}

/// `10485760`, `10MiB`, `10MB`, `4.5M` (M = MB, decimal, as Docker prints).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a size (try 10485760, 10MiB or 50MB)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1048576.0,
        "gi" | "gib" => 1073741824.0,
        u => {
            return Err(format!(
                "{text:?}: unknown unit {u:?} (use B, kB, MB, GB, KiB, MiB, GiB)"
            ))
        }
    };
    Ok((n * mult).round() as u64)
}

/// `0.9` or `90%`.
pub fn parse_ratio(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let v: f64 = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse(),
    }
    .map_err(|_| format!("{text:?} is not a ratio (try 0.9 or 90%)"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{text:?} is not between 0 and 1 (or 0% and 100%)"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ratios() {
        assert_eq!(parse_size("10MiB").unwrap(), 10485760);
        assert_eq!(parse_size("5MB").unwrap(), 5_000_000);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5XB").is_err());
        assert_eq!(parse_ratio("90%").unwrap(), 0.9);
        assert_eq!(parse_ratio("0.5").unwrap(), 0.5);
        assert!(parse_ratio("2").is_err());
    }
}
