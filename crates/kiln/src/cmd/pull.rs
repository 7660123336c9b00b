//! `kiln pull NAME [--platform P]`: like `docker pull`, per-layer progress
//! then the digest. Also home of the transfer renderer `kiln push` shares.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context as _;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_oci::{Digest, Platform, Reference};
use kiln_registry::{Client, ClientOptions, Event};
use kiln_store::Store;

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Image to pull: NAME[:TAG|@DIGEST]
    pub name: String,
    /// Platform to choose from a multi-platform image (OS/ARCH[/VARIANT]).
    /// Default: this machine's.
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Print only the image name at the end.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let reference = Reference::parse(&args.name)?;
    let platform = match &args.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let store = Store::open(&global.root)
        .with_context(|| format!("opening the store at {}", global.root.display()))?;
    let client = client(global);
    let out = Transfer::new(Verb::Pull, args.quiet);
    if !args.quiet {
        let what = match (reference.tag(), reference.digest()) {
            (_, Some(d)) => d.to_string(),
            (Some(t), None) => t.to_string(),
            (None, None) => "latest".to_string(),
        };
        out.line(&format!("{what}: Pulling from {}", reference.repository()));
    }
    let pulled = kiln_registry::block_on(client.pull(&store, &reference, &platform, &out))?;
    if platform == Platform::host() {
        // As `docker pull` does: the first build on it need not wait.
        kiln_engine::Builder::open(&global.root)?.unpack(&reference.to_string())?;
    }
    out.finish();
    if !args.quiet {
        let digest = pulled.index_digest.unwrap_or(pulled.manifest_digest);
        println!("Digest: {digest}");
        if pulled.downloaded == 0 {
            println!("Status: Image is up to date for {}", reference.familiar());
        } else {
            println!(
                "Status: Downloaded newer image for {}",
                reference.familiar()
            );
        }
    }
    println!("{reference}");
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn client(global: &Global) -> Client {
    Client::new(ClientOptions {
        insecure_registries: global.insecure_registries.clone(),
        ..ClientOptions::default()
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Pull,
    Push,
}

/// Renders transfer events: a bar per blob on a terminal, one line per
/// state change otherwise (Docker's words in both).
pub(crate) struct Transfer {
    verb: Verb,
    quiet: bool,
    multi: Option<MultiProgress>,
    state: Mutex<HashMap<Digest, Option<ProgressBar>>>,
}

impl Transfer {
    pub fn new(verb: Verb, quiet: bool) -> Transfer {
        let multi = (!quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)));
        Transfer {
            verb,
            quiet,
            multi,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// A line above the bars (or on stdout without a terminal).
    pub fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.multi {
            Some(m) => {
                let _ = m.println(text);
            }
            None => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
            }
        }
    }

    fn status(&self, digest: &Digest, text: &str, finish: bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match (&self.multi, state.get(digest).cloned().flatten()) {
            (Some(_), Some(bar)) => {
                bar.set_message(text.to_string());
                if finish {
                    bar.finish();
                }
            }
            (Some(m), None) => {
                let bar = m.add(ProgressBar::new(0));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix}: {msg} {wide_bar} {bytes}/{total_bytes}",
                    )
                    .expect("valid template"),
                );
                bar.set_prefix(digest.short());
                bar.set_message(text.to_string());
                if finish {
                    bar.finish();
                }
                state.insert(*digest, Some(bar));
            }
            (None, _) => {
                state.insert(*digest, None);
                drop(state);
                self.line(&format!("{}: {text}", digest.short()));
            }
        }
    }

    fn bytes(&self, digest: &Digest, done: u64, size: u64) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Some(bar)) = state.get(digest) {
            bar.set_length(size);
            bar.set_position(done);
        }
    }

    /// Clears the bars, leaving their final state printed.
    pub fn finish(&self) {
        if let Some(m) = &self.multi {
            let _ = m.clear();
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            for (digest, bar) in state.iter() {
                if let Some(bar) = bar {
                    eprintln!("{}: {}", digest.short(), bar.message());
                }
            }
        }
    }
}

impl kiln_registry::Progress for Transfer {
    fn event(&self, event: Event) {
        if self.quiet {
            return;
        }
        let pull = self.verb == Verb::Pull;
        match event {
            Event::Waiting { digest, .. } => self.status(
                &digest,
                if pull {
                    "Pulling fs layer"
                } else {
                    "Preparing"
                },
                false,
            ),
            Event::Exists { digest } => self.status(
                &digest,
                if pull {
                    "Already exists"
                } else {
                    "Layer already exists"
                },
                true,
            ),
            Event::Mounted { digest, from } => {
                self.status(&digest, &format!("Mounted from {from}"), true)
            }
            Event::Started { digest, .. } => {
                // Only the bar shows the bytes; plain output stays short.
                if self.multi.is_some() {
                    self.status(&digest, if pull { "Downloading" } else { "Pushing" }, false)
                }
            }
            Event::Bytes { digest, done, size } => self.bytes(&digest, done, size),
            Event::Retrying {
                digest,
                attempt,
                cause,
            } => {
                let text = format!("Retrying (attempt {attempt}): {cause}");
                match digest {
                    Some(d) => self.status(&d, &text, false),
                    None => self.line(&text),
                }
            }
            Event::Done { digest } => {
                self.status(&digest, if pull { "Pull complete" } else { "Pushed" }, true)
            }
            Event::Resolved { .. } | Event::Manifest { .. } => {}
        }
    }
}
