//! Subcommands that work on one proxy's configuration and on fixture files, rather than on a
//! cluster.

pub mod check;
pub mod test;

use anyhow::{Context, Result};
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// Writes to standard output; a reader that went away (`| head`) ends the output quietly.
pub fn emit(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// A YAML or JSON file as a JSON value; `-` reads standard input.
pub fn read_value(path: &Path) -> Result<serde_json::Value> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        return serde_norway::from_str(&text).context("standard input: invalid YAML");
    }
    authz_fixture::fixture::read_value(path)
}

/// Progress on standard error for runs that take more than a couple of seconds, when a person
/// is watching (standard error is a terminal).
pub struct Progress {
    started: Instant,
    last: Option<Instant>,
    enabled: bool,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            started: Instant::now(),
            last: None,
            enabled: std::io::stderr().is_terminal(),
        }
    }

    pub fn tick(&mut self, done: usize, total: usize, what: &str) {
        if !self.enabled || self.started.elapsed() < Duration::from_secs(2) {
            return;
        }
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_millis(500))
        {
            return;
        }
        self.last = Some(Instant::now());
        eprint!("\r{done}/{total} {what}\x1b[K");
    }

    pub fn finish(&self) {
        if self.enabled && self.last.is_some() {
            eprint!("\r\x1b[K");
        }
    }
}
