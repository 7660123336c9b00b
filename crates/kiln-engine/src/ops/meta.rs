//! Steps that change only the image config (ENV, LABEL, CMD, …).

use std::collections::BTreeMap;

use kiln_dockerfile::{Command, StepKind};

use crate::image::{Healthcheck, RunConfig};

/// Applies a config-only step with BuildKit's semantics. `cmd_set` tells
/// whether this stage set CMD itself (then ENTRYPOINT keeps it).
pub fn apply(config: &mut RunConfig, step: &StepKind, cmd_set: &mut bool) {
    match step {
        StepKind::Env(pairs) => {
            for (k, v) in pairs {
                config.set_env(k, v);
            }
        }
        StepKind::Label(pairs) => {
            let labels = config.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in pairs {
                labels.insert(k.clone(), v.clone());
            }
        }
        StepKind::User(user) => config.user = user.clone(),
        StepKind::Expose(ports) => {
            let exposed = config.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in ports {
                let p = if p.contains('/') {
                    p.clone()
                } else {
                    format!("{p}/tcp")
                };
                exposed.insert(p, serde_json::json!({}));
            }
        }
        StepKind::Volume(vols) => {
            let volumes = config.volumes.get_or_insert_with(BTreeMap::new);
            for v in vols {
                volumes.insert(v.clone(), serde_json::json!({}));
            }
        }
        StepKind::Entrypoint(cmd) => {
            config.entrypoint = Some(command_argv(cmd, config));
            // An ENTRYPOINT resets the CMD inherited from the base image,
            // not one this stage set.
            if !*cmd_set {
                config.cmd = None;
            }
        }
        StepKind::Cmd(cmd) => {
            config.cmd = Some(command_argv(cmd, config));
            *cmd_set = true;
        }
        StepKind::Healthcheck(hc) => {
            config.healthcheck = Some(match hc {
                None => Healthcheck {
                    test: vec!["NONE".into()],
                    ..Default::default()
                },
                Some(h) => Healthcheck {
                    test: h.test.clone(),
                    interval: h.interval.as_nanos() as i64,
                    timeout: h.timeout.as_nanos() as i64,
                    start_period: h.start_period.as_nanos() as i64,
                    start_interval: h.start_interval.as_nanos() as i64,
                    retries: h.retries,
                },
            })
        }
        StepKind::StopSignal(sig) => config.stop_signal = Some(sig.clone()),
        StepKind::Shell(shell) => config.shell = Some(shell.clone()),
        StepKind::Onbuild(trigger) => config
            .on_build
            .get_or_insert_with(Vec::new)
            .push(trigger.clone()),
        // MAINTAINER sets the deprecated Author field, outside Config.
        StepKind::Maintainer(_) | StepKind::Arg(_) => {}
        StepKind::Run(_) | StepKind::Copy(_) | StepKind::Workdir(_) => {
            unreachable!("not a config-only step")
        }
    }
}

/// The argv a CMD/ENTRYPOINT stores: exec form as is, shell form wrapped in
/// the current SHELL (default `/bin/sh -c`).
pub fn command_argv(cmd: &Command, config: &RunConfig) -> Vec<String> {
    match cmd {
        Command::Exec(args) => args.clone(),
        Command::Shell(line) => {
            let mut argv = config
                .shell
                .clone()
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            argv.push(line.clone());
            argv
        }
    }
}
