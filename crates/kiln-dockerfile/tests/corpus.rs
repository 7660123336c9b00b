//! Every Dockerfile of the corpus parses, plans and lowers (all stages, not
//! only the reachable ones) with a plain base config.

mod common;

use kiln_dockerfile::{lower, parse, plan, BaseImageConfig};

#[test]
fn corpus_parses_plans_and_lowers() {
    let dir = common::testdata().join("corpus");
    let files: Vec<_> = common::sorted_dir(&dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    assert!(files.len() >= 40, "corpus has only {} files", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let src = std::fs::read_to_string(f).unwrap();
        let result = parse(&name, &src).and_then(|df| {
            // Plan every named stage as a target so unreachable ones lower too.
            let mut targets: Vec<Option<String>> = vec![None];
            for ins in &df.instructions {
                if let kiln_dockerfile::InstructionKind::From(fr) = &ins.kind {
                    targets.extend(fr.stage_name.clone().map(Some));
                }
            }
            for t in targets {
                let mut o = common::opts();
                o.target = t;
                let p = plan(&df, &o)?;
                for st in &p.stages {
                    let base = BaseImageConfig {
                        env: vec![
                            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                                .into(),
                        ],
                        ..Default::default()
                    };
                    let steps = lower(&p, st.index, &base)?;
                    assert_eq!(
                        steps.len(),
                        st.instructions.len(),
                        "{name}: one step per instruction"
                    );
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "corpus failures:\n{}",
        failures.join("\n")
    );
}
