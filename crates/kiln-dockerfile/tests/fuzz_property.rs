//! The fuzz property, bounded and deterministic so CI runs it without
//! cargo-fuzz: parse → plan → lower over the corpus and parse goldens with
//! random mutations must never panic (errors are fine).

mod common;

use kiln_dockerfile::{lint::lint, lower, parse, plan, BaseImageConfig};

/// xorshift64*: fixed seed, same sequence on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SNIPPETS: &[&str] = &[
    "\\",
    "\\\n",
    "`",
    "$",
    "${",
    "}",
    "${A:-",
    "${A#",
    "${A//x/y}",
    "\"",
    "'",
    "[",
    "]",
    "\"]",
    "<<EOF",
    "<<-'E'",
    "\nEOF\n",
    "\n",
    "\n\n",
    "#",
    "# escape=`\n",
    "--mount=type=",
    "--from=",
    "--",
    "=",
    ",",
    " AS ",
    "FROM ",
    "RUN ",
    "COPY ",
    "ONBUILD ",
    "ARG ",
    "ENV ",
    "HEALTHCHECK CMD ",
    "\t",
    "\u{feff}",
    "é",
    "\0",
    "*",
    "**/",
];

fn mutate(rng: &mut Rng, src: &str) -> String {
    let mut s: Vec<char> = src.chars().collect();
    for _ in 0..1 + rng.below(4) {
        let pos = rng.below(s.len() + 1);
        match rng.below(5) {
            0 => {
                let snip = SNIPPETS[rng.below(SNIPPETS.len())];
                for (k, c) in snip.chars().enumerate() {
                    s.insert(pos + k, c);
                }
            }
            1 if !s.is_empty() => {
                let end = (pos + rng.below(8)).min(s.len());
                s.drain(pos.min(end)..end);
            }
            2 => s.insert(pos, char::from(rng.below(128) as u8)),
            3 if !s.is_empty() => {
                let a = rng.below(s.len());
                let b = (a + rng.below(40)).min(s.len());
                let piece: Vec<char> = s[a..b].to_vec();
                for (k, c) in piece.into_iter().enumerate() {
                    s.insert(pos.min(s.len()) + k, c);
                }
            }
            _ => {
                let len = s.len();
                if len > 1 {
                    s.swap(rng.below(len), rng.below(len));
                }
            }
        }
    }
    s.into_iter().collect()
}

/// Everything a fuzz input goes through.
fn exercise(src: &str) {
    let Ok(df) = parse("Dockerfile", src) else {
        return;
    };
    let _ = lint(&df);
    let _ = kiln_dockerfile::dump::to_json_lines(&df);
    let opts = common::opts();
    let Ok(p) = plan(&df, &opts) else { return };
    let base = BaseImageConfig {
        env: vec!["PATH=/bin".into()],
        onbuild: vec!["RUN echo hi".into()],
        ..Default::default()
    };
    for st in &p.stages {
        let _ = lower(&p, st.index, &base);
    }
}

#[test]
fn mutated_inputs_never_panic() {
    let mut seeds = Vec::new();
    for f in common::sorted_dir(&common::testdata().join("corpus")) {
        seeds.push(std::fs::read_to_string(f).unwrap());
    }
    for d in common::sorted_dir(&common::testdata().join("parse")) {
        seeds.push(std::fs::read_to_string(d.join("Dockerfile")).unwrap());
    }
    let iterations: usize = std::env::var("KILN_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let mut rng = Rng(0x6b69_6c6e_2d66_757a);
    for i in 0..iterations {
        let seed = &seeds[i % seeds.len()];
        let input = mutate(&mut rng, seed);
        let result = std::panic::catch_unwind(|| exercise(&input));
        assert!(result.is_ok(), "panic on iteration {i}; input:\n{input:?}");
    }
}
