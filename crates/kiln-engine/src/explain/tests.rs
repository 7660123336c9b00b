//! A build's records, then a second build with one input changed: the
//! explanation names that input, through the chain of parents.

use super::*;
use crate::cache::{inputs, CacheKey, StepInfo};

struct Build {
    base: Link,
    copy: Link,
    arg: Link,
    run: Link,
}

fn link(inputs: Inputs, label: &str) -> Link {
    Link {
        inputs,
        label: label.into(),
        details: Details::new(),
    }
}

fn build(manifest: &str, main_go: &str, version: &str) -> Build {
    let base = link(inputs::image(manifest), "FROM golang:1.22");
    let hash = *blake3::hash(main_go.as_bytes()).as_bytes();
    let mut copy = link(
        inputs::copy(&inputs::Copy {
            parent: base.inputs.key(),
            is_add: false,
            sources: &[],
            dest: ".",
            workdir: "/src",
            chown: None,
            chmod: None,
            link: false,
            exclude: &[],
            parents: false,
            unpack: None,
            heredocs: &[],
            source: inputs::CopySource::Context(hash),
            urls: &[],
        }),
        "COPY at Dockerfile:4",
    );
    copy.details.insert(
        "context".into(),
        vec![
            ("go.mod".into(), "aa".into()),
            (
                "main.go".into(),
                blake3::hash(main_go.as_bytes()).to_hex().to_string(),
            ),
        ],
    );
    let arg_text = format!("ARG VERSION={version}");
    let arg = link(
        inputs::meta(copy.inputs.key(), &arg_text, &arg_text),
        "ARG at Dockerfile:5",
    );
    let argv = ["/bin/sh".to_string(), "-c".into(), "go build".into()];
    let args = [format!("VERSION={version}")];
    let run = link(
        inputs::run(&inputs::Run {
            parent: arg.inputs.key(),
            argv: &argv,
            env: &[],
            build_args: &args,
            user: "",
            workdir: "/src",
            network: "host",
            mounts: &[],
        }),
        "RUN at Dockerfile:6",
    );
    Build {
        base,
        copy,
        arg,
        run,
    }
}

fn record(cache: &Cache, l: &Link, identity: &str) {
    let rec = CacheRecord {
        layer: None,
        inputs: Some(l.inputs.clone()),
        step: Some(StepInfo {
            label: l.label.clone(),
            identities: vec![identity.into()],
        }),
        details: l.details.clone(),
        fast_key: None,
    };
    cache.put(&l.inputs.key(), &rec).unwrap();
}

fn record_build(cache: &Cache, b: &Build) {
    record(cache, &b.base, "base");
    record(cache, &b.copy, "copy");
    record(cache, &b.arg, "arg");
    record(cache, &b.run, "run");
}

fn why_run(cache: &Cache, b: &Build) -> Explanation {
    let chain = [b.base.clone(), b.copy.clone(), b.arg.clone()];
    explain(cache, &chain, &b.run, &["run".into()]).expect("an earlier record")
}

fn cache() -> (tempfile::TempDir, Cache) {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    (dir, cache)
}

#[test]
fn a_changed_file_is_named_with_the_copy_that_read_it() {
    let (_d, cache) = cache();
    record_build(&cache, &build("sha256:1", "package main", "1.2"));
    let e = why_run(&cache, &build("sha256:1", "package main // v2", "1.2"));
    assert_eq!(e.reason, "file main.go changed (COPY at Dockerfile:4)");
    assert!(
        e.changes[0].starts_with("COPY at Dockerfile:4: context: hash "),
        "{e:?}"
    );
}

#[test]
fn a_changed_build_arg_is_named_with_old_and_new_value() {
    let (_d, cache) = cache();
    record_build(&cache, &build("sha256:1", "x", "1.2"));
    let e = why_run(&cache, &build("sha256:1", "x", "1.3"));
    assert_eq!(e.reason, "build arg VERSION changed 1.2 → 1.3");
    assert_eq!(
        e.changes,
        vec![r#"build_args: "VERSION=1.2" → "VERSION=1.3""#]
    );
}

#[test]
fn a_new_base_image_is_named_with_its_digest() {
    let (_d, cache) = cache();
    record_build(&cache, &build("sha256:1", "x", "1.2"));
    let e = why_run(&cache, &build("sha256:2", "x", "1.2"));
    assert_eq!(
        e.reason,
        "base image golang:1.22 is now sha256:2 (was sha256:1)"
    );
}

#[test]
fn no_earlier_record_and_a_lost_layer() {
    let (_d, cache) = cache();
    let b = build("sha256:1", "x", "1.2");
    assert_eq!(explain(&cache, &[], &b.run, &["run".into()]), None);
    record_build(&cache, &b);
    let e = why_run(&cache, &b);
    assert!(e.reason.contains("gone from the store"), "{e:?}");
    let _ = CacheKey([0; 32]);
}
