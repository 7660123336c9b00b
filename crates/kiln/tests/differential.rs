//! Differential suite: every case in `tests/differential/cases/` is built by
//! Docker 20.10 (BuildKit) and by kiln from the same context, both images are
//! exported as docker-archives, and their configs and root filesystems must
//! match (timestamps excepted). Cases Docker 20.10 cannot build are checked
//! against the expectations in their `case.toml`. See docs/testing.md.
//!
//! Environment:
//! - `KILN_DIFF_CASES=a,b`: run only these cases.
//! - `KILN_DIFF_SELF_CHECK=1`: compare Docker with Docker (`--no-cache`)
//!   instead of kiln, to validate the harness and the cases themselves.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::archive::{read_docker_archive, Image};
use common::case::{load_all, Case};
use common::compare::{compare, Ignore};
use common::engine::{BuildRequest, Docker, Engine, Kiln};

fn suite_dir() -> PathBuf {
    common::repo_root().join("tests/differential")
}

/// Builds `case` (prerequisites first) with `engine` and reads the result.
fn build_side(
    engine: &dyn Engine,
    case: &Case,
    tag: &str,
    no_cache: bool,
    scratch: &Path,
) -> Result<Image, String> {
    let no_args = BTreeMap::new();
    let mut build_args = case.spec.build_args.clone();
    for pre in &case.spec.prerequisite {
        build_args.insert(pre.arg.clone(), pre.unique_tag());
        let dockerfile = case.dir.join(&pre.dockerfile);
        let context = case.dir.join(pre.context.as_deref().unwrap_or("."));
        engine
            .build(&BuildRequest {
                dockerfile: &dockerfile,
                context: &context,
                tag: &pre.unique_tag(),
                target: None,
                build_args: &no_args,
                secrets: Vec::new(),
                no_cache,
            })
            .map_err(|e| format!("{} build of prerequisite {}: {e}", engine.name(), pre.tag))?;
    }
    let dockerfile = case.dockerfile();
    let context = case.context();
    let request = BuildRequest {
        dockerfile: &dockerfile,
        context: &context,
        tag,
        target: case.spec.target.as_deref(),
        build_args: &build_args,
        secrets: case
            .spec
            .secrets
            .iter()
            .map(|(id, file)| (id.clone(), case.dir.join(file)))
            .collect(),
        no_cache,
    };
    let started = Instant::now();
    let built = engine
        .build(&request)
        .map_err(|e| format!("{} build: {e}", engine.name()));
    let elapsed = started.elapsed();
    let result = built.and_then(|()| {
        let archive = scratch.join(format!("{}.tar", engine.name()));
        engine
            .save(tag, &archive)
            .map_err(|e| format!("{} save: {e}", engine.name()))?;
        let image = read_docker_archive(&archive, Some(tag))
            .map_err(|e| format!("reading {}'s image: {e}", engine.name()));
        let _ = std::fs::remove_file(&archive);
        image
    });
    eprintln!(
        "  {}: {} {:.1}s",
        case.name,
        engine.name(),
        elapsed.as_secs_f64()
    );
    for pre in &case.spec.prerequisite {
        engine.remove(&pre.unique_tag());
    }
    engine.remove(tag);
    result
}

/// Runs one case; `Err` carries every problem found, one per line.
fn run_case(
    case: &Case,
    reference: &Docker,
    subject: &dyn Engine,
    self_check: bool,
) -> Result<(), Vec<String>> {
    let scratch = kiln_testkit::tempdir();
    let tag = format!("kiln-diff-{}:{}", case.name, std::process::id());
    let subject_tag = format!("kiln-diff-{}:{}-subject", case.name, std::process::id());
    let docker_builds = case.spec.docker.builds;
    let (reference_scratch, subject_scratch) =
        (scratch.path().join("ref"), scratch.path().join("sub"));
    std::fs::create_dir_all(&reference_scratch).map_err(|e| vec![e.to_string()])?;
    std::fs::create_dir_all(&subject_scratch).map_err(|e| vec![e.to_string()])?;
    // Prerequisites get the same name on both sides, so in self-check mode (both sides are
    // Docker) the two sides must not run at once.
    let parallel = !self_check;
    let (reference_image, subject_image) = std::thread::scope(|s| {
        let reference_side =
            || docker_builds.then(|| build_side(reference, case, &tag, false, &reference_scratch));
        let subject_side = || build_side(subject, case, &subject_tag, self_check, &subject_scratch);
        if parallel {
            let handle = s.spawn(reference_side);
            let subject_image = subject_side();
            (handle.join().expect("docker side panicked"), subject_image)
        } else {
            let r = reference_side();
            (r, subject_side())
        }
    });
    let mut problems = Vec::new();
    let subject_image = match subject_image {
        Ok(image) => Some(image),
        Err(e) => {
            problems.push(e);
            None
        }
    };
    let reference_image = match reference_image {
        Some(Ok(image)) => Some(image),
        Some(Err(e)) => {
            problems.push(format!("(reference side) {e}"));
            None
        }
        None => None,
    };
    if let (Some(r), Some(s)) = (&reference_image, &subject_image) {
        problems.extend(compare("docker", r, subject.name(), s, &case.ignore()));
    }
    if let Some(r) = &reference_image {
        for p in case.check_expectations(r, false) {
            problems.push(format!(
                "(docker does not meet the case's expectations) {p}"
            ));
        }
    }
    if let Some(s) = &subject_image {
        problems.extend(case.check_expectations(s, !self_check));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Cheap (no root, nothing built): the suite's size and provenance promises.
#[test]
fn suite_has_100_cases_40_from_outside_sources() {
    let cases = load_all(&suite_dir().join("cases")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        cases.len() >= 100,
        "the suite promises at least 100 cases, found {}",
        cases.len()
    );
    let outside = cases.iter().filter(|c| c.spec.source.is_some()).count();
    assert!(
        outside >= 40,
        "the suite promises at least 40 cases from outside sources \
         ([source] in case.toml), found {outside}"
    );
}

#[test]
fn differential_cases() {
    if !kiln_testkit::require_root()
        || !kiln_testkit::require_docker()
        || !kiln_testkit::require_base_images()
    {
        return;
    }
    let dir = suite_dir();
    let cases = load_all(&dir.join("cases")).unwrap_or_else(|e| panic!("{e}"));
    let known = common::known_failures(&dir.join("KNOWN_FAILURES"));
    for name in known.keys() {
        assert!(
            cases.iter().any(|c| &c.name == name),
            "KNOWN_FAILURES lists {name}, which is not a case"
        );
    }
    let only: Option<Vec<String>> = std::env::var("KILN_DIFF_CASES")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let self_check = std::env::var_os("KILN_DIFF_SELF_CHECK").is_some_and(|v| v == "1");

    let root = kiln_testkit::tempdir();
    let kiln = Kiln::new(root.path());
    let subject: &dyn Engine = if self_check { &Docker } else { &kiln };
    let setup = if self_check {
        Ok(())
    } else {
        kiln.import_base_images()
    };

    let mut failed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut ran = Vec::new();
    for case in &cases {
        if only.as_ref().is_some_and(|o| !o.contains(&case.name)) {
            continue;
        }
        if self_check && !case.spec.docker.builds {
            continue;
        }
        ran.push(case.name.clone());
        let result = match &setup {
            Ok(()) => run_case(case, &Docker, subject, self_check),
            Err(e) => Err(vec![e.clone()]),
        };
        if let Err(problems) = result {
            failed.insert(case.name.clone(), problems);
        }
    }

    let mut report = Vec::new();
    let mut unexpected = 0;
    for (name, problems) in &failed {
        let listed = known.contains_key(name) && !self_check;
        if !listed {
            unexpected += 1;
        }
        let shown = 40;
        report.push(format!(
            "{} {name}: {} problem(s){}",
            if listed { "KNOWN  " } else { "FAILED " },
            problems.len(),
            known
                .get(name)
                .map(|r| format!(" — listed: {r}"))
                .unwrap_or_default()
        ));
        for p in problems.iter().take(shown) {
            report.push(format!("    {p}"));
        }
        if problems.len() > shown {
            report.push(format!("    … and {} more", problems.len() - shown));
        }
    }
    let fixed: Vec<&String> = if self_check {
        Vec::new()
    } else {
        ran.iter()
            .filter(|n| known.contains_key(*n) && !failed.contains_key(*n))
            .collect()
    };
    for name in &fixed {
        report.push(format!(
            "PASSES {name}, but KNOWN_FAILURES still lists it: remove the line"
        ));
    }
    eprintln!(
        "differential: {} case(s) run, {} failed ({} unexpected), {} listed case(s) now pass",
        ran.len(),
        failed.len(),
        unexpected,
        fixed.len()
    );
    eprintln!("{}", report.join("\n"));
    assert!(
        unexpected == 0 && fixed.is_empty(),
        "differential suite: {unexpected} unexpected failure(s), {} stale KNOWN_FAILURES line(s):\n{}",
        fixed.len(),
        report.join("\n")
    );
}

/// The harness itself must see differences: the same Dockerfile built by
/// Docker twice with different build arguments differs in exactly the
/// places the arguments reach, and twice with the same ones not at all.
#[test]
fn harness_reports_differences() {
    if !kiln_testkit::require_docker() || !kiln_testkit::require_base_images() {
        return;
    }
    let dir = kiln_testkit::tempdir();
    let ctx = dir.path();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:latest\nARG V=1\nARG M=644\nLABEL v=$V\n\
         RUN echo $V > /v && chmod $M /v && ln -s /v /link && mkdir -p /d/e \
         && rm /bin/vi\nCMD [\"cat\", \"/v\"]\n",
    )
    .unwrap();
    let build = |tag: &str, args: &[(&str, &str)], no_cache: bool| -> Image {
        let args: BTreeMap<String, String> = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let req = BuildRequest {
            dockerfile: &ctx.join("Dockerfile"),
            context: ctx,
            tag,
            target: None,
            build_args: &args,
            secrets: Vec::new(),
            no_cache,
        };
        Docker.build(&req).unwrap();
        let archive = ctx.join(format!("{}.tar", tag.replace([':', '/'], "_")));
        Docker.save(tag, &archive).unwrap();
        let image = read_docker_archive(&archive, Some(tag)).unwrap();
        Docker.remove(tag);
        image
    };
    let pid = std::process::id();
    let a = build(&format!("kiln-harness-a:{pid}"), &[], false);
    let b = build(&format!("kiln-harness-b:{pid}"), &[], true);
    let c = build(
        &format!("kiln-harness-c:{pid}"),
        &[("V", "2"), ("M", "4755")],
        false,
    );

    let same = compare("a", &a, "b", &b, &Ignore::default());
    assert!(
        same.is_empty(),
        "identical builds reported different: {same:#?}"
    );
    assert!(a.tree.entries.contains_key("/d/e") && !a.tree.entries.contains_key("/bin/vi"));
    assert_eq!(a.tree.entries["/link"].link.as_deref(), Some("/v"));

    let diff = compare("a", &a, "c", &c, &Ignore::default());
    let text = diff.join("\n");
    assert!(
        text.contains("config.Labels"),
        "label difference missed:\n{text}"
    );
    assert!(
        diff.iter()
            .any(|l| l.starts_with("/v: a=file 0644 0:0 2 bytes") && l.contains("c=file 4755")),
        "content/mode difference on /v missed:\n{text}"
    );
    assert!(
        text.contains("\"1\\n\" vs \"2\\n\""),
        "contents not shown:\n{text}"
    );
    assert_eq!(diff.len(), 3, "unexpected extra differences:\n{text}");

    let ignored = compare(
        "a",
        &a,
        "c",
        &c,
        &Ignore {
            paths: vec!["/v".into()],
            config: vec!["Labels".into()],
        },
    );
    assert!(
        ignored.is_empty(),
        "ignored differences reported: {ignored:#?}"
    );
}

/// Whiteouts, opaque directories, hard links and implicit parents, on
/// hand-made layers.
#[test]
fn tree_applies_layers_like_an_extractor() {
    use common::tree::{Kind, Tree};
    fn layer(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if *kind == tar::EntryType::Directory {
                0o755
            } else {
                0o644
            });
            h.set_uid(0);
            h.set_gid(0);
            h.set_size(data.len() as u64);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }
    use tar::EntryType::{Directory as D, Link as L, Regular as F, Symlink as S};
    let mut t = Tree::default();
    t.apply_layer(&layer(&[
        ("./", D, b"", None),
        ("etc/", D, b"", None),
        ("etc/a", F, b"a", None),
        ("etc/sub/b", F, b"b", None),
        ("keep/x", F, b"x", None),
        ("gone/y", F, b"y", None),
        ("lnk", S, b"", Some("/etc/a")),
        ("hard", L, b"", Some("etc/a")),
    ]))
    .unwrap();
    assert_eq!(t.entries["/etc/sub"].kind, Kind::Dir, "implicit parent");
    assert_eq!(t.entries["/hard"].content, t.entries["/etc/a"].content);
    assert_eq!(
        t.hardlink_groups().into_iter().collect::<Vec<_>>(),
        vec![vec!["/etc/a".to_string(), "/hard".to_string()]]
    );
    t.apply_layer(&layer(&[
        ("etc/.wh..wh..opq", F, b"", None),
        ("etc/new", F, b"n", None),
        (".wh.gone", F, b"", None),
        ("keep", F, b"now a file", None),
    ]))
    .unwrap();
    let paths: Vec<&str> = t.entries.keys().map(String::as_str).collect();
    assert_eq!(paths, vec!["/etc", "/etc/new", "/hard", "/keep", "/lnk"]);
    assert_eq!(t.entries["/lnk"].link.as_deref(), Some("/etc/a"));
    assert!(
        t.hardlink_groups().is_empty(),
        "/etc/a is gone, /hard stands alone"
    );
    assert_eq!(
        t.entries["/keep"].content.as_deref().unwrap(),
        b"now a file"
    );
}
