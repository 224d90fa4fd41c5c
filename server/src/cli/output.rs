//! Where command output goes: lines on stdout, notes and progress on stderr.
//!
//! A reader that went away (`eventbus listeners list --all | head -1`) ends the command at once,
//! quietly and with status 0: the rest of the output has nowhere to go, and `println!` would
//! panic ("failed printing to stdout: Broken pipe") and exit 101. Rust ignores SIGPIPE, and
//! restoring its default needs `unsafe`, which the workspace forbids; so every line goes
//! through [`line`], which handles EPIPE itself.
//!
//! Hazard: ending the process skips destructors. A subscriber that was printing leaves its
//! notification unsettled, so the group delivers it again, which is what a consumer that
//! stopped reading should get.

use std::fmt::Display;
use std::io::{self, IsTerminal, Write};

use eventbus_server::telemetry::colour;
use serde_json::Value;

/// Writes one line to stdout and flushes it (so that streams show each line at once).
pub fn line(text: impl Display) {
    let mut out = io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        stdout_failed(&e);
    }
}

/// Prints a JSON value on one line.
pub fn print_json(value: &Value) {
    line(value);
}

/// Writes a note for people to stderr (hints, "no listeners"); a closed stderr is ignored.
pub fn note(text: impl Display) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

fn stdout_failed(e: &io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    note(format_args!("error: writing to stdout: {e}"));
    std::process::exit(1);
}

/// Returns whether stderr gets colour: a terminal, and `NO_COLOR` unset or empty.
pub fn stderr_colour() -> bool {
    colour(io::stderr().is_terminal())
}

/// Returns whether stdout gets colour: a terminal, and `NO_COLOR` unset or empty.
pub fn stdout_colour() -> bool {
    colour(io::stdout().is_terminal())
}

/// Returns `text` in bold when `on`.
pub fn bold(text: &str, on: bool) -> String {
    if on { format!("\x1b[1m{text}\x1b[0m") } else { text.to_owned() }
}

/// Prints rows as columns separated by two spaces; the last column is not padded. The header
/// is bold on a terminal.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let row = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_owned()
    };
    line(bold(&row(header.to_vec()), stdout_colour()));
    for cells in rows {
        line(row(cells.iter().map(String::as_str).collect()));
    }
}

/// A progress line on stderr, redrawn in place; shown only when stderr is a terminal.
#[derive(Debug)]
pub struct Progress {
    shown: bool,
    last: std::time::Instant,
}

impl Progress {
    /// Starts a progress line when stderr is a terminal and `large` says the work is worth one.
    pub fn new(large: bool) -> Self {
        let shown = large && io::stderr().is_terminal();
        Self { shown, last: std::time::Instant::now() }
    }

    /// Redraws the line, at most ten times a second.
    pub fn update(&mut self, text: impl Display) {
        if self.shown && self.last.elapsed() >= std::time::Duration::from_millis(100) {
            self.last = std::time::Instant::now();
            let _ = write!(io::stderr().lock(), "\r\x1b[2K{text}");
        }
    }

    /// Clears the line.
    pub fn finish(&mut self) {
        if self.shown {
            let _ = write!(io::stderr().lock(), "\r\x1b[2K");
            self.shown = false;
        }
    }
}
