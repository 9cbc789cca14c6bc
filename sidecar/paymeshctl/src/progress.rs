//! What a ramp shows while it runs: on a terminal, one live line redrawn in
//! place (step, percent, requests judged, error rate, p99, time left, ETA);
//! otherwise, plain lines only — one per step written and one per judged
//! interval — so logs and CI output stay readable.

use std::io::{IsTerminal, Write};

#[derive(Debug)]
pub struct Progress {
    live: bool,
    /// A live line is on screen and needs clearing before a plain one.
    drawn: bool,
}

impl Progress {
    pub fn new() -> Progress {
        Progress { live: std::io::stdout().is_terminal(), drawn: false }
    }

    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Redraws the live line (terminals only).
    pub fn live(&mut self, text: &str) {
        if !self.live {
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\r\x1b[2K{text}");
        let _ = out.flush();
        self.drawn = true;
    }

    /// A line that stays.
    pub fn line(&mut self, text: &str) {
        let mut out = std::io::stdout().lock();
        if self.drawn {
            let _ = write!(out, "\r\x1b[2K");
            self.drawn = false;
        }
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// Leaves the terminal on a fresh line.
    pub fn finish(&mut self) {
        if self.drawn {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[2K");
            let _ = out.flush();
            self.drawn = false;
        }
    }
}
