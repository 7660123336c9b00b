//! Renders build progress like BuildKit: a live tree on a terminal, numbered
//! lines for logs (`plain`), one JSON object per event (`json`), or nothing
//! but the image id (`quiet`).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_engine::progress::{Event, Progress, StepId, Stream};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Auto,
    Tty,
    Plain,
    Json,
    Quiet,
}

/// Lines of a running step's output shown under it on a terminal.
const TAIL_LINES: usize = 6;

pub struct Renderer {
    mode: Mode,
    /// `--explain-cache`: print every changed input, not just the reason.
    explain: bool,
    start: Instant,
    state: Mutex<State>,
    multi: Option<MultiProgress>,
}

#[derive(Default)]
struct State {
    steps: HashMap<StepId, StepState>,
}

struct StepState {
    name: String,
    /// Everything the step printed, shown in full if it fails.
    output: Vec<u8>,
    /// Partial line not yet printed in plain mode.
    pending: Vec<u8>,
    failed: bool,
    bar: Option<ProgressBar>,
}

impl Renderer {
    pub fn new(mode: Mode, explain: bool) -> Renderer {
        let mode = match mode {
            Mode::Auto if std::io::stderr().is_terminal() => Mode::Tty,
            Mode::Auto => Mode::Plain,
            m => m,
        };
        let multi = (mode == Mode::Tty)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)));
        Renderer {
            mode,
            explain,
            start: Instant::now(),
            state: Mutex::new(State::default()),
            multi,
        }
    }

    /// Steps that failed, with everything they printed, for the error
    /// report (a terminal only showed their last lines).
    pub fn failed_steps(&self) -> Vec<(String, Vec<u8>)> {
        let state = self.state.lock().unwrap();
        let mut failed: Vec<_> = state.steps.iter().filter(|(_, s)| s.failed).collect();
        failed.sort_by_key(|(id, _)| **id);
        failed
            .into_iter()
            .map(|(_, s)| (s.name.clone(), s.output.clone()))
            .collect()
    }

    /// Whether step output already went to the terminal in full.
    pub fn streams_logs(&self) -> bool {
        matches!(self.mode, Mode::Plain | Mode::Json)
    }

    /// Stops live drawing so the final messages print cleanly.
    pub fn finish(&self) {
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }

    pub fn is_quiet(&self) -> bool {
        self.mode == Mode::Quiet
    }

    fn stamp(&self) -> String {
        format!("{:.3}", self.start.elapsed().as_secs_f64())
    }

    fn plain(&self, line: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }

    fn json(&self, value: serde_json::Value) {
        let mut out = std::io::stderr().lock();
        let _ = writeln!(out, "{value}");
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn tail(output: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(output);
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let from = all.len().saturating_sub(lines);
    all[from..]
        .iter()
        .map(|l| format!("  │ {}", l.chars().take(160).collect::<String>()))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Progress for Renderer {
    fn event(&self, event: Event) {
        let mut state = self.state.lock().unwrap();
        let state = &mut *state;
        // Events of a step nobody started are dropped.
        match event {
            Event::Started { id, name } => self.started(state, id, name),
            Event::Warning(message) => self.warning(&message),
            Event::Log { id, stream, data } => {
                if let Some(step) = state.steps.get_mut(&id) {
                    self.log(step, id, stream, &data);
                }
            }
            Event::Rebuilt {
                id,
                reason,
                changes,
            } => {
                if let Some(step) = state.steps.get_mut(&id) {
                    self.rebuilt(step, id, &reason, &changes);
                }
            }
            Event::Cached { id } => {
                if let Some(step) = state.steps.get_mut(&id) {
                    self.cached(step, id);
                }
            }
            Event::Done { id, elapsed } | Event::Failed { id, elapsed } => {
                let failed = matches!(event, Event::Failed { .. });
                if let Some(step) = state.steps.get_mut(&id) {
                    self.finished(step, id, elapsed, failed);
                }
            }
        }
    }
}

impl Renderer {
    fn started(&self, state: &mut State, id: StepId, name: String) {
        let bar = self.multi.as_ref().map(|m| {
            let b = m.add(ProgressBar::new_spinner());
            b.set_style(
                ProgressStyle::with_template("{spinner:.blue} {prefix} {elapsed:.dim}\n{wide_msg}")
                    .unwrap()
                    .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ "),
            );
            b.set_prefix(format!("#{id} {name}"));
            b.enable_steady_tick(Duration::from_millis(100));
            b
        });
        match self.mode {
            Mode::Plain => self.plain(&format!("#{id} {name}")),
            Mode::Json => self.json(serde_json::json!({"step": id, "event": "started", "name": name, "time": self.stamp()})),
            _ => {}
        }
        state.steps.insert(
            id,
            StepState {
                name,
                output: Vec::new(),
                pending: Vec::new(),
                failed: false,
                bar,
            },
        );
    }

    fn log(&self, step: &mut StepState, id: StepId, stream: Stream, data: &[u8]) {
        step.output.extend_from_slice(data);
        match self.mode {
            Mode::Tty => {
                if let Some(b) = &step.bar {
                    b.set_message(tail(&step.output, TAIL_LINES));
                }
            }
            Mode::Plain => {
                step.pending.extend_from_slice(data);
                while let Some(nl) = step.pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = step.pending.drain(..=nl).collect();
                    let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                    self.plain(&format!("#{id} {} {text}", self.stamp()));
                }
            }
            Mode::Json => self.json(serde_json::json!({
                "step": id, "event": "log",
                "stream": if stream == Stream::Stdout { "stdout" } else { "stderr" },
                "data": String::from_utf8_lossy(data),
            })),
            _ => {}
        }
    }

    fn rebuilt(&self, step: &mut StepState, id: StepId, reason: &str, changes: &[String]) {
        let shown = if self.explain { changes } else { &[] };
        match self.mode {
            Mode::Tty => {
                if let Some(b) = &step.bar {
                    b.set_prefix(format!("#{id} {} — rebuilt: {reason}", step.name));
                }
                if let Some(m) = &self.multi {
                    for c in shown {
                        let _ = m.println(format!("#{id}   {c}"));
                    }
                }
            }
            Mode::Plain => {
                self.plain(&format!("#{id} rebuilt: {reason}"));
                for c in shown {
                    self.plain(&format!("#{id}   {c}"));
                }
            }
            Mode::Json => self.json(serde_json::json!({
                "step": id, "event": "rebuilt", "reason": reason, "changes": changes,
            })),
            Mode::Quiet | Mode::Auto => {}
        }
    }

    fn cached(&self, step: &mut StepState, id: StepId) {
        match self.mode {
            Mode::Tty => finish_bar(step, "CACHED".into()),
            Mode::Plain => self.plain(&format!("#{id} CACHED")),
            Mode::Json => self.json(serde_json::json!({"step": id, "event": "cached"})),
            _ => {}
        }
    }

    fn finished(&self, step: &mut StepState, id: StepId, elapsed: Duration, failed: bool) {
        step.failed = failed;
        let word = if failed { "ERROR" } else { "DONE" };
        match self.mode {
            Mode::Tty => finish_bar(step, format!("{word} {}", secs(elapsed))),
            Mode::Plain => {
                if !step.pending.is_empty() {
                    let text = String::from_utf8_lossy(&step.pending).into_owned();
                    step.pending.clear();
                    self.plain(&format!("#{id} {} {text}", self.stamp()));
                }
                self.plain(&format!("#{id} {word} {}", secs(elapsed)));
            }
            Mode::Json => self.json(serde_json::json!({
                "step": id, "event": if failed { "failed" } else { "done" },
                "seconds": elapsed.as_secs_f64(),
            })),
            _ => {}
        }
    }

    fn warning(&self, message: &str) {
        match self.mode {
            Mode::Json => self.json(serde_json::json!({"event": "warning", "message": message})),
            Mode::Quiet => {}
            _ => match &self.multi {
                Some(m) => {
                    let _ = m.println(format!("WARNING: {}", kiln_oci::escape(message)));
                }
                None => self.plain(&format!("WARNING: {}", kiln_oci::escape(message))),
            },
        }
    }
}

fn finish_bar(step: &mut StepState, status: String) {
    if let Some(b) = step.bar.take() {
        b.set_style(ProgressStyle::with_template("{prefix} {msg:.dim}").unwrap());
        b.finish_with_message(status);
    }
}
