//! SIGTERM and SIGINT as something the main loop can sleep on.
//!
//! The signals are blocked and routed to a signalfd, so the wait between two
//! samples is a `poll` that ends at the next sample or at the first signal,
//! whichever comes first: a long interval never delays shutdown, and no
//! signal handler (nor any `unsafe`) is needed.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

#[derive(Debug)]
pub struct Shutdown {
    signals: SignalFd,
}

impl Shutdown {
    /// Blocks SIGTERM and SIGINT on the calling thread and starts listening
    /// for them. Call it before spawning threads, so they inherit the mask.
    pub fn listen() -> nix::Result<Self> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGTERM);
        mask.add(Signal::SIGINT);
        mask.thread_block()?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
        Ok(Self { signals })
    }

    /// Sleeps until `deadline`, or returns early with the signal that asked
    /// the daemon to stop.
    pub fn wait_until(&self, deadline: Instant) -> nix::Result<Option<Signal>> {
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let mut fds = [PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, poll_timeout(remaining)) {
                Ok(0) if Instant::now() >= deadline => return Ok(None),
                // Woken early (say, stopped and continued): sleep the rest.
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            if let Some(info) = self.signals.read_signal()? {
                return Signal::try_from(info.ssi_signo as i32).map(Some);
            }
        }
    }
}

/// `poll` counts whole milliseconds; round up so the loop does not spin
/// through the last fraction of one.
fn poll_timeout(remaining: Duration) -> PollTimeout {
    let millis = remaining.as_micros().div_ceil(1000);
    PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
}
