//! A small JSON-over-HTTP client for the backends, on a pooled keep-alive
//! connection set.
//!
//! It tells apart the two failures that matter for payments: the request
//! never left ([`Transport::Connect`], safe to report as unavailable) and the
//! request may have been acted on ([`Transport::Timeout`] and
//! [`Transport::Protocol`], where only a retry with the same idempotency key
//! can tell the outcome).

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Transport {
    #[error("connect: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("protocol: {0}")]
    Protocol(String),
}

impl Transport {
    /// Whether the backend may have received and acted on the request.
    pub fn may_have_reached(&self) -> bool {
        !matches!(self, Transport::Connect(_))
    }
}

#[derive(Clone, Debug)]
pub struct JsonClient {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    timeout: Duration,
}

impl JsonClient {
    /// `base` is `http://host:port` without a trailing slash; `timeout`
    /// bounds one whole exchange, body included.
    pub fn new(base: &str, connect_timeout: Duration, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        Self { client, base: base.trim_end_matches('/').to_owned(), timeout }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub async fn get(&self, path: &str) -> Result<(u16, Bytes), Transport> {
        self.send(Method::GET, path, Bytes::new()).await
    }

    pub async fn post<T: serde::Serialize + ?Sized>(&self, path: &str, body: &T) -> Result<(u16, Bytes), Transport> {
        let body = serde_json::to_vec(body).map_err(|e| Transport::Protocol(e.to_string()))?;
        self.send(Method::POST, path, Bytes::from(body)).await
    }

    async fn send(&self, method: Method, path: &str, body: Bytes) -> Result<(u16, Bytes), Transport> {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| Transport::Protocol(e.to_string()))?;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| {
                if e.is_connect() { Transport::Connect(e.to_string()) } else { Transport::Protocol(e.to_string()) }
            })?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.map_err(|e| Transport::Protocol(e.to_string()))?;
            Ok((status, body.to_bytes()))
        };
        tokio::time::timeout(self.timeout, exchange).await.map_err(|_| Transport::Timeout)?
    }
}
