//! Progress of a command over many rooms: a redrawn bar on a terminal, one plain
//! line per room otherwise (logs, pipes, CI).

use std::io::{IsTerminal, Write};

/// Width of the bar in characters.
const BAR_WIDTH: usize = 30;

/// Progress over a known number of steps, written to stderr.
pub struct Progress {
    label: &'static str,
    total: usize,
    done: usize,
    terminal: bool,
}

impl Progress {
    /// Progress over `total` steps; draws a bar when stderr is a terminal.
    pub fn new(label: &'static str, total: usize) -> Self {
        Self {
            label,
            total,
            done: 0,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Counts one finished step, named `what`, with its `outcome`.
    pub fn advance(&mut self, what: &str, outcome: &str) {
        self.done += 1;
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(
                err,
                "\r\x1b[2K{} {} {what} {outcome}",
                self.label,
                bar(self.done, self.total, BAR_WIDTH)
            );
            let _ = err.flush();
        } else {
            let _ = writeln!(
                err,
                "{}: {}/{} {what} {outcome}",
                self.label, self.done, self.total
            );
        }
    }

    /// Ends the bar's line on a terminal.
    pub fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}

/// `[#####.....] 5/10`: the bar for `done` of `total` steps.
pub fn bar(done: usize, total: usize, width: usize) -> String {
    let filled = (done.min(total) * width)
        .checked_div(total)
        .unwrap_or(width);
    format!(
        "[{}{}] {done}/{total}",
        "#".repeat(filled),
        ".".repeat(width - filled)
    )
}

#[cfg(test)]
mod tests {
    use super::bar;

    #[test]
    fn the_bar_fills_in_proportion_and_never_overflows() {
        assert_eq!(bar(0, 4, 8), "[........] 0/4");
        assert_eq!(bar(1, 4, 8), "[##......] 1/4");
        assert_eq!(bar(4, 4, 8), "[########] 4/4");
        assert_eq!(bar(5, 4, 8), "[########] 5/4");
        assert_eq!(bar(0, 0, 4), "[####] 0/0");
    }
}
