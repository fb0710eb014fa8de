//! A progress line on stderr: done / total, the configuration running, and
//! the time left at the rate so far. Redrawn in place on a terminal; on a
//! pipe (CI logs), one line per tenth of the work.

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Counts finished generations.
pub struct Progress {
    total: usize,
    done: usize,
    /// Generations taken from the resume log (not timed).
    skipped: usize,
    start: Instant,
    enabled: bool,
    terminal: bool,
    last_tenth: usize,
}

impl Progress {
    /// A bar over `total` generations; `enabled` false prints nothing.
    pub fn new(total: usize, enabled: bool) -> Self {
        Self { total, done: 0, skipped: 0, start: Instant::now(), enabled, terminal: std::io::stderr().is_terminal(), last_tenth: 0 }
    }

    /// Counts `n` generations found in the resume log.
    pub fn skip(&mut self, n: usize) {
        self.done += n;
        self.skipped += n;
    }

    /// Counts one finished generation of configuration `label`.
    pub fn tick(&mut self, label: &str) {
        self.done += 1;
        if !self.enabled {
            return;
        }
        let total = self.total.max(self.done);
        let ran = self.done - self.skipped;
        let elapsed = self.start.elapsed().as_secs_f64();
        let left = if ran > 0 { elapsed / ran as f64 * (total - self.done) as f64 } else { 0.0 };
        let width = 30;
        let filled = width * self.done / total.max(1);
        let line = format!(
            "eval [{}{}] {}/{} {label:<12} {:.0}m{:02.0}s left",
            "#".repeat(filled),
            " ".repeat(width - filled),
            self.done,
            total,
            (left / 60.0).floor(),
            left % 60.0
        );
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r{line}\x1b[K");
            if self.done == total {
                let _ = writeln!(err);
            }
        } else {
            let tenth = 10 * self.done / total.max(1);
            if tenth > self.last_tenth || self.done == total {
                self.last_tenth = tenth;
                let _ = writeln!(err, "{line}");
            }
        }
        let _ = err.flush();
    }
}
