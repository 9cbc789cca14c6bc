//! `paymeshctl reload` and `paymeshctl component`: a sidecar's
//! state-changing admin requests.
//!
//! The sidecar takes them only from loopback peers that present its admin
//! token (`admin.token_file`), so these run in the pod (`kubectl exec … -c
//! sidecar`) with the token file the chart mounts. The token is read from a
//! file, never from the command line, where `ps` would show it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, Args)]
pub struct AdminTarget {
    /// The sidecar's admin base URL.
    #[arg(long, env = "PAYMESH_ADMIN_URL", default_value = "http://127.0.0.1:9901")]
    sidecar: String,
    /// File holding the sidecar's admin token (its `admin.token_file`).
    #[arg(long, env = "PAYMESH_ADMIN_TOKEN_FILE", value_name = "FILE")]
    admin_token_file: PathBuf,
}

/// The token in `path`, without surrounding whitespace, as the sidecar reads it.
fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("--admin-token-file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("--admin-token-file {}: the file is empty", path.display());
    }
    Ok(token.to_owned())
}

/// POSTs `body` to `path` on the sidecar with the token; the answer's body
/// on 2xx, an error naming the status and the sidecar's message otherwise.
pub async fn post(target: &AdminTarget, path: &str, body: &str) -> anyhow::Result<String> {
    let token = read_token(&target.admin_token_file)?;
    let url = format!("{}{path}", target.sidecar.trim_end_matches('/'));
    let req = http::Request::post(&url)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .with_context(|| format!("bad URL {url}"))?;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let res = tokio::time::timeout(std::time::Duration::from_secs(10), client.request(req))
        .await
        .with_context(|| format!("{url}: no answer within 10s"))?
        .with_context(|| format!("{url}: request failed"))?;
    let status = res.status();
    let text = String::from_utf8_lossy(&res.into_body().collect().await?.to_bytes()).into_owned();
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().or(v["error"].as_str()).map(str::to_owned))
            .unwrap_or_else(|| text.trim().to_owned());
        bail!("{url}: {status}: {message}");
    }
    Ok(text)
}

/// `on`, `off` or `auto` as the component endpoint's body.
pub fn component_body(state: &str) -> anyhow::Result<&'static str> {
    Ok(match state {
        "on" => r#"{"enabled": true}"#,
        "off" => r#"{"enabled": false}"#,
        "auto" => r#"{"enabled": null}"#,
        other => bail!("{other:?}: expected on, off or auto"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_file_is_trimmed_and_must_not_be_empty() {
        let dir = std::env::temp_dir().join(format!("paymeshctl-admin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "  secret-token\n").unwrap();
        assert_eq!(read_token(&path).unwrap(), "secret-token");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_token(&path).unwrap_err().to_string().contains("empty"));
        assert!(read_token(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(component_body("sideways").is_err());
        assert_eq!(component_body("auto").unwrap(), r#"{"enabled": null}"#);
    }
}
