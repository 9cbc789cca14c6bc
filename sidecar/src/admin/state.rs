//! `GET /admin/state`: what this sidecar is running with, secrets left out.

use std::sync::atomic::Ordering;

use serde_json::{Map, Value, json};

use crate::components::Component;
use crate::config::ShownClients;
use crate::migration::Feature;
use crate::state::Shared;

pub fn render(shared: &Shared) -> String {
    let snap = shared.live.load();
    let config = &snap.config;
    let clients: Vec<Value> = snap
        .clients
        .iter()
        .map(|c| {
            json!({
                "id": &*c.id,
                "rate": { "per_second": c.rate.per_second, "burst": c.rate.burst, "scope": c.scope.as_str() },
                "cert_names": c.cert_names,
            })
        })
        .collect();
    let mut migration = Map::new();
    let overrides = shared.migration.overrides();
    for f in Feature::MIGRATING {
        // Overrides of configured clients only; others route nothing.
        let mut by_client = Map::new();
        let mut ignored = Vec::new();
        for (id, o) in &overrides[f.index()] {
            if snap.clients.by_id(id).is_some() {
                by_client.insert(
                    id.clone(),
                    json!({ "percent": f64::from(o.basis_points) / 100.0, "source": o.source.as_str() }),
                );
            } else {
                ignored.push(id.chars().take(128).collect::<String>());
            }
        }
        migration.insert(
            f.as_str().into(),
            json!({
                "percent": f64::from(shared.migration.basis_points(f)) / 100.0,
                "source": shared.migration.source(f).as_str(),
                "clients": by_client,
                "ignored_client_overrides": ignored,
            }),
        );
    }
    let mut components = Map::new();
    for c in Component::ALL {
        // `control` (board or manual) and the last switch's reason and time.
        let mut entry = shared.overload.component_state(c);
        entry["enabled"] = shared.components.enabled(c).into();
        entry["sheddable"] = config.overload.components.iter().any(|n| n == c.as_str()).into();
        components.insert(c.as_str().into(), entry);
    }
    // The connection in use (endpoints, connected, last error) and the
    // revision of the migration view applied.
    let mut etcd = shared.migration_sync.etcd.state();
    etcd["revision"] = shared.migration_sync.revision.load(Ordering::Relaxed).into();
    let state = json!({
        "config": {
            "version": snap.version,
            "sha256": hex(&snap.sha256),
            "path": shared.config_path.as_ref().map(|p| p.display().to_string()),
            "loaded_at": humantime::format_rfc3339_seconds(snap.loaded_at).to_string(),
            "listen": config.listen.to_string(),
            "app": config.app.to_string(),
            "tls": config.tls.is_some(),
            "mtls": config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
            "admin_token": config.admin_token.is_some(),
            "limits": {
                "max_connections": config.limits.max_connections,
                "max_inflight": config.limits.max_inflight,
                "max_body_bytes": config.limits.max_body_bytes,
                "request_timeout": humantime::format_duration(config.limits.request_timeout).to_string(),
                "header_read_timeout": humantime::format_duration(config.limits.header_read_timeout).to_string(),
                "idle_timeout": humantime::format_duration(config.limits.idle_timeout).to_string(),
                "connect_timeout": humantime::format_duration(config.limits.connect_timeout).to_string(),
                "drain_timeout": humantime::format_duration(config.limits.drain_timeout).to_string(),
            },
            "metrics": {
                "client_series": match &config.metrics.client_series {
                    ShownClients::All => json!("all"),
                    ShownClients::Listed(ids) => json!(ids),
                },
            },
        },
        "clients": clients,
        "migration": migration,
        "etcd": etcd,
        "components": components,
        "fleet": shared.fleet.state(),
        "shadow": shared.shadow.state(&snap),
        "overload": shared.overload.overload_state(&config.overload),
        "ready": {
            "app_reachable": shared.app_reachable.load(Ordering::Relaxed),
            "draining": shared.draining.load(Ordering::Relaxed),
        },
        "inflight": shared.metrics.inflight.get(),
        "telemetry": shared.overload.telemetry_state(&config.overload.telemetry_file),
    });
    state.to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
