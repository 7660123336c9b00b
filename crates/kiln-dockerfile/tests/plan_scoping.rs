//! Stage graph and ARG/ENV scoping, checked through plan() and lower().

mod common;

use kiln_dockerfile::{lower, parse, plan, Base, BaseImageConfig, Command, PlanOptions, StepKind};

fn planned(src: &str, f: impl FnOnce(&mut PlanOptions)) -> Result<kiln_dockerfile::Plan, String> {
    let df = parse("Dockerfile", src).map_err(|e| e.to_string())?;
    let mut o = common::opts();
    f(&mut o);
    plan(&df, &o).map_err(|e| e.to_string())
}

fn history(p: &kiln_dockerfile::Plan, stage: usize, base: &BaseImageConfig) -> Vec<String> {
    lower(p, stage, base)
        .unwrap()
        .into_iter()
        .map(|s| s.created_by)
        .collect()
}

#[test]
fn reachable_stages_in_dependency_order_with_waves() {
    let p = planned(
        "FROM alpine AS a\nFROM alpine AS b\nFROM alpine AS unused\nFROM a AS c\nCOPY --from=b /x /x\nRUN --mount=from=0,target=/m true\nCOPY --from=nginx:1 /y /y\n",
        |_| {},
    )
    .unwrap();
    let idx: Vec<usize> = p.stages.iter().map(|s| s.index).collect();
    assert_eq!(idx, vec![0, 1, 3]);
    assert_eq!(p.target, 3);
    let c = p.stage(3).unwrap();
    assert_eq!(c.base, Base::Stage(0));
    assert_eq!(c.deps, vec![0, 1]);
    assert_eq!(c.image_deps, vec!["nginx:1".to_string()]);
    assert_eq!(p.waves(), vec![vec![0, 1], vec![3]]);
}

#[test]
fn target_selects_and_unknown_target_lists_stages() {
    let src = "FROM alpine AS build\nFROM scratch AS final\n";
    let p = planned(src, |o| o.target = Some("BUILD".into())).unwrap();
    assert_eq!(p.target, 0);
    assert_eq!(p.stages.len(), 1);
    let e = planned(src, |o| o.target = Some("biuld".into())).unwrap_err();
    assert!(
        e.contains("target stage \"biuld\" could not be found"),
        "{e}"
    );
    assert!(e.contains("did you mean \"build\""), "{e}");
    assert!(e.contains("stages: build, final"), "{e}");
    assert_eq!(
        planned(src, |_| {}).unwrap().stage(1).unwrap().base,
        Base::Scratch
    );
}

#[test]
fn graph_errors() {
    let e = planned("FROM alpine AS a\nCOPY --from=a /x /x\n", |_| {}).unwrap_err();
    assert!(e.contains("circular dependency"), "{e}");
    let e = planned("FROM alpine\nCOPY --from=1 /x /x\nFROM alpine\n", |_| {}).unwrap_err();
    assert!(e.contains("defined after"), "{e}");
    let e = planned(
        "FROM alpine AS later_ref\nCOPY --from=b /x /x\nFROM alpine AS b\n",
        |_| {},
    )
    .unwrap_err();
    assert!(e.contains("defined after"), "{e}");
    let e = planned("FROM alpine AS x\nFROM alpine AS X\n", |_| {}).unwrap_err();
    assert!(e.contains("duplicate stage name"), "{e}");
    let e = planned("FROM alpine\nCOPY --from=7 /x /x\n", |_| {}).unwrap_err();
    assert!(e.contains("invalid stage index 7"), "{e}");
    let e = planned("FROM alpine\nRUN --mount=from=$X,target=/m true\n", |_| {}).unwrap_err();
    assert!(e.contains("doesn't support variable expansion"), "{e}");
}

#[test]
fn global_args_only_in_from_unless_redeclared() {
    let src = "ARG V=1.0\nARG IMG=alpine\nFROM ${IMG}:$V\nRUN echo $V\nARG V\nRUN echo $V\n";
    let p = planned(src, |_| {}).unwrap();
    assert_eq!(p.stages[0].base, Base::Image("alpine:1.0".into()));
    let h = history(&p, 0, &BaseImageConfig::default());
    assert_eq!(
        h,
        vec![
            "RUN /bin/sh -c echo $V # buildkit",
            "ARG V=1.0",
            "RUN |1 V=1.0 /bin/sh -c echo $V # buildkit",
        ]
    );
    // --build-arg overrides the global default, also where it is re-declared.
    let p = planned(src, |o| o.build_args = vec![("V".into(), "2.0".into())]).unwrap();
    assert_eq!(p.stages[0].base, Base::Image("alpine:2.0".into()));
    assert_eq!(history(&p, 0, &BaseImageConfig::default())[1], "ARG V=2.0");
}

#[test]
fn env_shadows_arg_and_base_env_is_in_scope() {
    let src = "FROM alpine\nARG A=arg\nENV A=env\nENV B=${A}-$HOME\nRUN true\n";
    let p = planned(src, |_| {}).unwrap();
    let base = BaseImageConfig {
        env: vec!["HOME=/root".into(), "PATH=/bin".into()],
        ..Default::default()
    };
    let steps = lower(&p, 0, &base).unwrap();
    assert_eq!(steps[2].created_by, "ENV B=env-/root");
    match &steps[3].kind {
        StepKind::Run(kiln_dockerfile::RunStep { build_env, .. }) => {
            assert!(build_env.is_empty(), "A is shadowed by ENV: {build_env:?}")
        }
        k => panic!("{k:?}"),
    }
    // runCommandString shows the ENV value for a shadowed arg
    assert_eq!(
        steps[3].created_by,
        "RUN |1 A=env /bin/sh -c true # buildkit"
    );
}

#[test]
fn proxy_args_and_platform_args() {
    let src = "FROM alpine\nARG TARGETARCH\nARG BUILDPLATFORM\nRUN echo $TARGETARCH\n";
    let p = planned(src, |o| {
        o.build_args = vec![
            ("http_proxy".into(), "http://p:3128".into()),
            ("UNUSED".into(), "x".into()),
        ];
        o.target_platform = "linux/arm64/v8".into();
    })
    .unwrap();
    let steps = lower(&p, 0, &BaseImageConfig::default()).unwrap();
    assert_eq!(steps[0].created_by, "ARG TARGETARCH=arm64");
    assert_eq!(steps[1].created_by, "ARG BUILDPLATFORM=linux/amd64");
    match &steps[2].kind {
        StepKind::Run(kiln_dockerfile::RunStep {
            proxy_env,
            build_env,
            ..
        }) => {
            // Both spellings, as BuildKit's proxyEnvList sets them.
            assert_eq!(
                proxy_env,
                &vec![
                    ("http_proxy".to_string(), "http://p:3128".to_string()),
                    ("HTTP_PROXY".to_string(), "http://p:3128".to_string())
                ]
            );
            assert_eq!(build_env.len(), 2);
        }
        k => panic!("{k:?}"),
    }
    assert!(
        !steps[2].created_by.contains("proxy"),
        "{}",
        steps[2].created_by
    );
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(p.warnings[0].message.contains("UNUSED"));
    // platform args are not defined in a stage unless declared
    let p = planned("FROM alpine\nENV X=${TARGETARCH:-none}\n", |_| {}).unwrap();
    assert_eq!(
        history(&p, 0, &BaseImageConfig::default()),
        vec!["ENV X=none"]
    );
}

#[test]
fn onbuild_triggers_run_first_and_shell_form_stays_shell() {
    let src = "FROM base\nARG N=1\nCMD serve --port 80\nSHELL [\"/bin/bash\", \"-c\"]\nENTRYPOINT run me\n";
    let p = planned(src, |_| {}).unwrap();
    let base = BaseImageConfig {
        onbuild: vec!["RUN echo from-trigger".into(), "ENV T=1".into()],
        ..Default::default()
    };
    let steps = lower(&p, 0, &base).unwrap();
    assert_eq!(
        steps[0].created_by,
        "RUN /bin/sh -c echo from-trigger # buildkit"
    );
    assert!(steps[0].from_onbuild && steps[1].from_onbuild && !steps[2].from_onbuild);
    assert_eq!(
        steps[3].kind,
        StepKind::Cmd(Command::Shell("serve --port 80".into()))
    );
    assert_eq!(
        steps[3].created_by,
        r#"CMD ["/bin/sh" "-c" "serve --port 80"]"#
    );
    assert_eq!(steps[4].created_by, "SHELL [/bin/bash -c]");
    assert_eq!(
        steps[5].created_by,
        r#"ENTRYPOINT ["/bin/bash" "-c" "run me"]"#
    );
    let bad = BaseImageConfig {
        onbuild: vec!["FROM x".into()],
        ..Default::default()
    };
    assert!(lower(&p, 0, &bad)
        .unwrap_err()
        .to_string()
        .contains("ONBUILD"));
}

#[test]
fn copy_workdir_and_history_texts() {
    let src = "FROM alpine AS b\nFROM alpine\nARG D=/app\nWORKDIR $D\nWORKDIR sub/../lib\nCOPY --from=b --chown=1:2 --chmod=644 a* $D/\nCOPY <<EOF /motd\nhi $D\nEOF\nEXPOSE 443 80/udp\nVOLUME /data\nHEALTHCHECK --interval=30s --retries=3 CMD true\nSTOPSIGNAL SIGKILL\n";
    let p = planned(src, |_| {}).unwrap();
    let steps = lower(&p, 1, &BaseImageConfig::default()).unwrap();
    let h: Vec<&str> = steps.iter().map(|s| s.created_by.as_str()).collect();
    assert_eq!(
        h,
        vec![
            "ARG D=/app",
            "WORKDIR /app",
            "WORKDIR /app/lib",
            "COPY --chown=1:2 --chmod=644 a* /app/ # buildkit",
            "COPY <<EOF /motd # buildkit",
            "EXPOSE map[443/tcp:{} 80/udp:{}]",
            "VOLUME [/data]",
            r#"HEALTHCHECK &{["CMD-SHELL" "true"] "30s" "0s" "0s" "0s" '\x03'}"#,
            "STOPSIGNAL SIGKILL",
        ]
    );
    match &steps[4].kind {
        StepKind::Copy(kiln_dockerfile::CopyStep { heredocs, .. }) => {
            assert_eq!(heredocs[0].content, "hi /app\n")
        }
        k => panic!("{k:?}"),
    }
    match &steps[3].kind {
        StepKind::Copy(kiln_dockerfile::CopyStep { from, .. }) => {
            assert_eq!(from, &Some(kiln_dockerfile::CopyFrom::Stage(0)))
        }
        k => panic!("{k:?}"),
    }
    assert!(steps[3].creates_layer && !steps[0].creates_layer && steps[1].creates_layer);
}

#[test]
fn run_heredoc_forms_and_mounts() {
    let src = "FROM alpine\nARG C=/cache\nRUN <<EOF\necho one\nEOF\nRUN <<EOF\n#!/bin/sh\necho script\nEOF\nRUN --mount=type=cache,target=$C,sharing=locked --mount=type=secret,id=tok --mount=type=ssh cat <<X\nbody\nX\n";
    let p = planned(src, |_| {}).unwrap();
    let steps = lower(&p, 0, &BaseImageConfig::default()).unwrap();
    assert_eq!(
        steps[1].created_by,
        "RUN |1 C=/cache /bin/sh -c echo one\n # buildkit"
    );
    match &steps[2].kind {
        StepKind::Run(kiln_dockerfile::RunStep { cmd, mounts, .. }) => {
            assert_eq!(cmd, &Command::Shell("/dev/pipes/EOF".into()));
            assert!(
                matches!(&mounts[0], kiln_dockerfile::RunMount::HeredocFile { name, mode: 0o755, .. } if name == "EOF")
            );
        }
        k => panic!("{k:?}"),
    }
    match &steps[3].kind {
        StepKind::Run(kiln_dockerfile::RunStep { cmd, mounts, .. }) => {
            assert_eq!(cmd, &Command::Shell("cat <<X\nbody\nX".into()));
            use kiln_dockerfile::{CacheSharing, RunMount};
            assert!(
                matches!(&mounts[0], RunMount::Cache { target, id, sharing: CacheSharing::Locked, .. } if target == "/cache" && id == "/cache")
            );
            assert!(
                matches!(&mounts[1], RunMount::Secret { target: Some(t), mode: 0o400, .. } if t == "/run/secrets/tok")
            );
            assert!(matches!(&mounts[2], RunMount::Ssh { id, .. } if id == "default"));
        }
        k => panic!("{k:?}"),
    }
}

#[test]
fn expansion_errors_point_at_the_instruction() {
    let p = planned("FROM alpine\n\nCOPY \"a b\" /x\n", |_| {}).unwrap();
    let e = lower(&p, 0, &BaseImageConfig::default())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("Dockerfile:3:1: failed to process"), "{e}");
    assert!(e.contains("matching double-quote"), "{e}");
    let e = planned("FROM alpine:${V:?required}\n", |_| {}).unwrap_err();
    assert!(e.contains("V: required"), "{e}");
}

#[test]
fn arg_redeclared_after_env_wins_until_the_next_env() {
    let src = "FROM alpine\nENV X=env\nARG X=arg\nLABEL a=$X\nRUN true\nENV X=env2\nLABEL b=$X\nRUN true\n";
    let p = planned(src, |_| {}).unwrap();
    let steps = lower(&p, 0, &BaseImageConfig::default()).unwrap();
    let label = |i: usize| match &steps[i].kind {
        StepKind::Label(kv) => kv[0].1.clone(),
        k => panic!("{k:?}"),
    };
    let run_env = |i: usize| match &steps[i].kind {
        StepKind::Run(kiln_dockerfile::RunStep { build_env, .. }) => build_env.clone(),
        k => panic!("{k:?}"),
    };
    assert_eq!(label(2), "arg");
    assert_eq!(run_env(3), vec![("X".to_string(), "arg".to_string())]);
    assert_eq!(label(5), "env2");
    assert!(run_env(6).is_empty());
}

#[test]
fn absolute_workdir_is_kept_as_written_relative_is_cleaned() {
    let src = "FROM alpine\nWORKDIR /a/./x/../y/\nWORKDIR rel/../sub\n";
    let p = planned(src, |_| {}).unwrap();
    let steps = lower(&p, 0, &BaseImageConfig::default()).unwrap();
    let dirs: Vec<&StepKind> = steps.iter().map(|s| &s.kind).collect();
    assert!(matches!(dirs[0], StepKind::Workdir(d) if d == "/a/./x/../y/"));
    assert!(matches!(dirs[1], StepKind::Workdir(d) if d == "/a/y/sub"));
}
