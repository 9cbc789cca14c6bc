//! The whole pod as processes: orchestrator, app and sidecar in front, in
//! one temp dir, the sidecar ready.

use crate::{AppProcess, Orchestrator, SidecarProcess};
use std::time::Duration;

#[derive(Debug)]
pub struct Pod {
    pub orchestrator: Orchestrator,
    pub app: AppProcess,
    pub sidecar: SidecarProcess,
    pub dir: tempfile::TempDir,
}

impl Pod {
    /// A pod whose sidecar config carries `extra` YAML sections.
    pub async fn start(extra: &str) -> Pod {
        Self::start_with(&[], extra).await
    }

    /// Like [`start`](Self::start), with extra orchestrator flags.
    pub async fn start_with(orchestrator_args: &[&str], extra: &str) -> Pod {
        let dir = tempfile::tempdir().expect("temp dir");
        let orchestrator = Orchestrator::start(&dir.path().join("data"), dir.path(), orchestrator_args).await;
        let app = AppProcess::start(&orchestrator.url, dir.path(), &[]).await;
        let app_addr = app.url.trim_start_matches("http://").to_owned();
        let sidecar = SidecarProcess::start(dir.path(), &app_addr, extra).await;
        sidecar.wait_ready(Duration::from_secs(10)).await;
        Pod { orchestrator, app, sidecar, dir }
    }
}
