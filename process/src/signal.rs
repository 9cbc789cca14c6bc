//! The stop signal: SIGTERM (Kubernetes, systemd) or SIGINT (a terminal).

use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGTERM and SIGINT, caught from the moment of `install`: from then on
/// neither kills the process with the default handler, which would skip the
/// drain.
#[derive(Debug)]
pub struct StopSignal {
    term: Signal,
    int: Signal,
}

impl StopSignal {
    /// Installs the handlers; needs a running tokio runtime.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    /// Waits for the first of the two and names it.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Resolves on SIGTERM or SIGINT and logs which (`SIGTERM: draining`). If
/// the handlers cannot be installed, logs that and never resolves: the
/// process then stops only when killed.
pub async fn stop_signal() {
    let Ok(mut stop) = StopSignal::install() else {
        tracing::error!("cannot install signal handlers; stopping only when killed");
        return std::future::pending().await;
    };
    match stop.recv().await {
        "SIGTERM" => tracing::info!("SIGTERM: draining"),
        _ => tracing::info!("SIGINT: draining"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SIGINT, not SIGTERM: should the handler somehow be missing, a test
    /// run interrupted by its own signal says so loudly either way.
    #[tokio::test]
    async fn names_the_signal_that_arrived() {
        let mut stop = StopSignal::install().unwrap();
        let status = std::process::Command::new("kill")
            .args(["-INT", &std::process::id().to_string()])
            .status()
            .expect("the kill command");
        assert!(status.success());
        let which = tokio::time::timeout(std::time::Duration::from_secs(5), stop.recv()).await;
        assert_eq!(which, Ok("SIGINT"));
    }
}
