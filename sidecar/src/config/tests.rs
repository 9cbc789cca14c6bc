//! Config validation: defaults, every problem at once, keys named.

use std::path::PathBuf;
use std::time::Duration;

use super::from_yaml;
use super::validate::parse_sha256;

const GOOD: &str = r#"
listen: "127.0.0.1:8080"
app: "127.0.0.1:8081"
clients:
  - id: checkout
    api_key_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    rate: { per_second: 200, burst: 400 }
"#;

#[test]
fn minimal_config_gets_defaults() {
    let c = from_yaml(GOOD.as_bytes()).unwrap();
    assert_eq!(c.admin, "0.0.0.0:9901".parse().unwrap());
    assert_eq!(c.limits.max_inflight, 1024);
    assert_eq!(c.limits.request_timeout, Duration::from_secs(10));
    assert_eq!(c.limits.connect_timeout, Duration::from_secs(1));
    assert_eq!(c.migration.defaults_bp, [0, 0, 0]);
    assert_eq!(c.access_log.path, None);
    assert_eq!(c.clients[0].rate.burst, 400);
    assert!(c.workers >= 1);
}

#[test]
fn full_design_example_parses() {
    let yaml = format!(
        "{GOOD}{}",
        r#"
admin: "0.0.0.0:9901"
limits: { max_inflight: 1024, max_body_bytes: 1048576, request_timeout: 10s }
migration:
  etcd_endpoints: ["http://127.0.0.1:2379"]
  prefix: /paymesh
  cache_file: /var/lib/paymesh/migration.json
  defaults: { charge: 12.5, refund: 0, disbursement: 100 }
overload:
  telemetry_file: /run/paymesh/telemetry.json
  check_interval: 1s
  shed:    { cpu_percent: 85, mem_percent: 90 }
  restore: { cpu_percent: 60, mem_percent: 75 }
  hold: 10s
  components: [access_log, detailed_metrics, tracing, profiling]
  events_file: /var/lib/paymesh/switch-events.jsonl
  events_rotate: { max_bytes: 104857600, keep: 5 }
access_log:
  path: /tmp/access.log
  buffer_lines: 16
  rotate: { max_bytes: 104857600, keep: 5 }
"#
    );
    let c = from_yaml(yaml.as_bytes()).unwrap();
    assert_eq!(c.migration.defaults_bp, [1250, 0, 10000]);
    assert_eq!(c.access_log.path, Some(PathBuf::from("/tmp/access.log")));
}

#[test]
fn unknown_key_is_named() {
    let yaml = GOOD.replace("burst: 400", "burst: 400, brust: 1");
    let e = from_yaml(yaml.as_bytes()).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert_eq!(e.0[0].key, "clients[0].rate");
    assert!(e.0[0].message.contains("brust"), "{e}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let yaml = r#"
listen: "nowhere"
app: "10.0.0.5:8081"
workers: 0
clients:
  - id: "bad id"
    api_key_sha256: "abc"
    rate: { per_second: 0, burst: 0 }
  - id: ok
limits: { request_timeout: soon, max_inflight: 0 }
migration: { defaults: { charge: 101 }, prefix: "paymesh/" }
overload: { components: [access_log, gpu], restore: { cpu_percent: 90, mem_percent: 10 } }
access_log: { buffer_lines: 0 }
"#;
    let e = from_yaml(yaml.as_bytes()).unwrap_err();
    let keys: Vec<&str> = e.0.iter().map(|e| e.key.as_str()).collect();
    for k in [
        "listen",
        "app",
        "workers",
        "clients[0].id",
        "clients[0].api_key_sha256",
        "clients[0].rate.per_second",
        "clients[0].rate.burst",
        "clients[1].api_key_sha256",
        "limits.request_timeout",
        "limits.max_inflight",
        "migration.defaults.charge",
        "migration.prefix",
        "overload.components[1]",
        "overload.restore.cpu_percent",
        "access_log.buffer_lines",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
}

#[test]
fn app_must_be_loopback() {
    let yaml = GOOD.replace("app: \"127.0.0.1:8081\"", "app: \"0.0.0.0:8081\"");
    let e = from_yaml(yaml.as_bytes()).unwrap_err();
    assert_eq!(e.0[0].key, "app");
    let yaml = GOOD.replace("app: \"127.0.0.1:8081\"", "app: \"[::1]:8081\"");
    assert!(from_yaml(yaml.as_bytes()).is_ok());
}

#[test]
fn duplicate_ids_and_hashes_are_refused() {
    let yaml = format!(
        "{GOOD}{}",
        r#"  - id: checkout
    api_key_sha256: "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"
"#
    );
    let e = from_yaml(yaml.as_bytes()).unwrap_err();
    let keys: Vec<&str> = e.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["clients[1].id", "clients[1].api_key_sha256"]);
}

#[test]
fn cert_names_need_mtls() {
    let yaml = GOOD.replace("rate:", "cert_names: [checkout.internal]\n    rate:");
    let e = from_yaml(yaml.as_bytes()).unwrap_err();
    assert_eq!(e.0[0].key, "clients[0].cert_names");
}

#[test]
fn sha256_hex_parses() {
    let h = parse_sha256(&"0f".repeat(32)).unwrap();
    assert_eq!(h, [0x0f; 32]);
    assert!(parse_sha256(&"0g".repeat(32)).is_none());
}

#[test]
fn rates_the_throttle_cannot_represent_are_refused() {
    for (rate, ok) in [
        ("{ per_second: 0.001, burst: 4000000000 }", false),
        ("{ per_second: 0.000000000001, burst: 1 }", false),
        ("{ per_second: 2000000000, burst: 1 }", false),
        ("{ per_second: 1000000000, burst: 1 }", true),
        ("{ per_second: 1000, burst: 4294967295 }", true),
    ] {
        let yaml = GOOD.replace("{ per_second: 200, burst: 400 }", rate);
        match from_yaml(yaml.as_bytes()) {
            Ok(_) => assert!(ok, "{rate} was accepted"),
            Err(e) => {
                assert!(!ok, "{rate} was refused: {e}");
                assert_eq!(e.0.len(), 1, "{e}");
                assert_eq!(e.0[0].key, "clients[0].rate", "{e}");
            }
        }
    }
}

#[test]
fn rotation_has_defaults_and_limits() {
    use crate::observe::Rotate;
    let c = from_yaml(GOOD.as_bytes()).unwrap();
    let default = Rotate { max_bytes: 104_857_600, keep: 5 };
    assert_eq!((c.access_log.rotate, c.overload.events_rotate), (default, default));

    let yaml = format!(
        "{GOOD}access_log: {{ path: /tmp/a.log, rotate: {{ max_bytes: 65536 }} }}\n\
         overload: {{ events_rotate: {{ keep: 1 }} }}\n"
    );
    let c = from_yaml(yaml.as_bytes()).unwrap();
    assert_eq!(c.access_log.rotate, Rotate { max_bytes: 65_536, keep: 5 });
    assert_eq!(c.overload.events_rotate, Rotate { max_bytes: 104_857_600, keep: 1 });

    let yaml = format!(
        "{GOOD}access_log: {{ rotate: {{ max_bytes: 100, keep: 0 }} }}\n\
         overload: {{ events_rotate: {{ keep: 1001, max_bytes: 65535 }} }}\n"
    );
    let keys: Vec<_> = from_yaml(yaml.as_bytes()).unwrap_err().0.into_iter().map(|e| e.key).collect();
    assert_eq!(
        keys,
        [
            "overload.events_rotate.max_bytes",
            "overload.events_rotate.keep",
            "access_log.rotate.max_bytes",
            "access_log.rotate.keep"
        ]
    );
    let e = from_yaml(format!("{GOOD}access_log: {{ rotate: {{ max_files: 3 }} }}\n").as_bytes()).unwrap_err();
    assert!(e.to_string().contains("max_files"), "{e}");
}

#[test]
fn admin_takes_an_address_or_a_mapping_with_a_token_file() {
    let c = from_yaml(format!("{GOOD}admin: \"127.0.0.1:9901\"\n").as_bytes()).unwrap();
    assert_eq!((c.admin, c.admin_token), ("127.0.0.1:9901".parse().unwrap(), None));
    let c = from_yaml(format!("{GOOD}admin: {{ listen: \"127.0.0.1:9902\" }}\n").as_bytes()).unwrap();
    assert_eq!((c.admin, c.admin_token), ("127.0.0.1:9902".parse().unwrap(), None));

    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "0123456789abcdef0123\n").unwrap();
    let yaml = format!("{GOOD}admin: {{ listen: \"127.0.0.1:9903\", token_file: {token:?} }}\n");
    let c = from_yaml(yaml.as_bytes()).unwrap();
    let t = c.admin_token.unwrap();
    assert_eq!(t.file, token);
    assert!(t.matches(b"0123456789abcdef0123"));

    // Keys are named, whichever form.
    let e = from_yaml(format!("{GOOD}admin: {{ listen: nowhere }}\n").as_bytes()).unwrap_err();
    assert_eq!(e.0[0].key, "admin.listen");
    let e = from_yaml(format!("{GOOD}admin: {{ listen: \"127.0.0.1:1\", tokenfile: x }}\n").as_bytes()).unwrap_err();
    assert!(e.to_string().contains("tokenfile"), "{e}");
    for contents in [None, Some(""), Some("\n"), Some("short")] {
        let path = dir.path().join("bad-token");
        let _ = std::fs::remove_file(&path);
        if let Some(c) = contents {
            std::fs::write(&path, c).unwrap();
        }
        let yaml = format!("{GOOD}admin: {{ token_file: {path:?} }}\n");
        let e = from_yaml(yaml.as_bytes()).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(e.0[0].key, "admin.token_file", "{contents:?}: {e}");
    }
}

#[test]
fn max_connections_defaults_from_the_descriptor_limit_and_is_checked() {
    let c = from_yaml(GOOD.as_bytes()).unwrap();
    assert_eq!(c.limits.max_connections, crate::connections::default_max_connections());
    assert!(c.limits.max_connections <= 10_000);
    let c = from_yaml(format!("{GOOD}limits: {{ max_connections: 8 }}\n").as_bytes()).unwrap();
    assert_eq!(c.limits.max_connections, 8);
    let e = from_yaml(format!("{GOOD}limits: {{ max_connections: 0 }}\n").as_bytes()).unwrap_err();
    assert_eq!(e.0[0].key, "limits.max_connections");
    if let Some(fds) = crate::connections::fd_soft_limit().filter(|&l| l < u64::from(u32::MAX)) {
        let e = from_yaml(format!("{GOOD}limits: {{ max_connections: {fds} }}\n").as_bytes()).unwrap_err();
        assert_eq!(e.0[0].key, "limits.max_connections", "{e}");
    }
}

#[test]
fn problems_stay_on_one_line_whatever_the_file_holds() {
    // Found by the `config` fuzz target: serde quotes an unknown key as
    // written, newlines and all, which split the --check-config report.
    let errors = super::from_yaml(b"{ <\n\n\n\n\"d17c6600b1").unwrap_err();
    let report = errors.to_string();
    assert_eq!(report.lines().count(), errors.0.len(), "{report}");
    assert!(report.contains("\\n"), "{report}");
}

#[test]
fn shadow_is_off_by_default_and_takes_a_percent_or_a_map() {
    let c = from_yaml(GOOD.as_bytes()).unwrap();
    assert_eq!(c.shadow.sample_bp, [0, 0, 0]);
    assert_eq!((c.shadow.max_inflight, c.shadow.timeout), (16, Duration::from_secs(2)));
    let all = from_yaml(
        format!("{GOOD}shadow: {{ sample_percent: 5, ignore_fields: [created, refunds.*.created] }}\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(all.shadow.sample_bp, [500, 500, 500]);
    assert_eq!(all.shadow.ignore_fields[1].0, ["refunds", "*", "created"]);
    let map =
        from_yaml(format!("{GOOD}shadow: {{ sample_percent: {{ refund: 2.5, charge: 100 }} }}\n").as_bytes()).unwrap();
    assert_eq!(map.shadow.sample_bp, [10000, 250, 0]);
}

#[test]
fn every_shadow_problem_is_named() {
    let yaml = format!(
        "{GOOD}{}",
        r#"shadow:
  sample_percent: { charge: 101, other: 5, payouts: 1 }
  max_inflight: 0
  timeout: 0s
  ignore_fields: ["", "a..b", "ok"]
"#
    );
    let e = from_yaml(yaml.as_bytes()).unwrap_err();
    let keys: Vec<&str> = e.0.iter().map(|e| e.key.as_str()).collect();
    for k in [
        "shadow.sample_percent.charge",
        "shadow.sample_percent.other",
        "shadow.sample_percent.payouts",
        "shadow.max_inflight",
        "shadow.timeout",
        "shadow.ignore_fields[0]",
        "shadow.ignore_fields[1]",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    assert!(!keys.contains(&"shadow.ignore_fields[2]"), "{keys:?}");
    for bad in [
        "shadow: { sample_percent: lots }",
        "shadow: { sample_percent: [1] }",
        "shadow: { timeout: 61s }",
        "shadow: { max_inflight: 5000 }",
        "shadow: { sample_percent: -1 }",
    ] {
        let e = from_yaml(format!("{GOOD}{bad}\n").as_bytes()).unwrap_err();
        assert!(e.0.iter().all(|e| e.key.starts_with("shadow")), "{bad}: {e}");
    }
}

#[test]
fn tracing_is_off_by_default_and_every_bad_value_is_named() {
    let c = from_yaml(GOOD.as_bytes()).unwrap();
    assert_eq!((c.tracing.endpoint, c.tracing.sample_ratio), (None, 1.0));
    let on = from_yaml(
        format!("{GOOD}tracing: {{ otlp_endpoint: \"http://127.0.0.1:4318\", protocol: http, sample_ratio: 0.25 }}\n")
            .as_bytes(),
    )
    .unwrap();
    let endpoint = on.tracing.endpoint.unwrap();
    assert_eq!((endpoint.url.as_str(), endpoint.transport), ("http://127.0.0.1:4318", paymesh_otel::Transport::Http));
    assert_eq!(on.tracing.sample_ratio, 0.25);
    for (bad, key) in [
        ("tracing: { protocol: udp }", "tracing.protocol"),
        ("tracing: { otlp_endpoint: \"collector:4317\" }", "tracing.otlp_endpoint"),
        ("tracing: { otlp_endpoint: \"https://collector:4317\" }", "tracing.otlp_endpoint"),
        ("tracing: { otlp_endpoint: \"http://\" }", "tracing.otlp_endpoint"),
        ("tracing: { sample_ratio: 1.5 }", "tracing.sample_ratio"),
        ("tracing: { sample_ratio: -0.1 }", "tracing.sample_ratio"),
        ("tracing: { sample_ratio: .nan }", "tracing.sample_ratio"),
    ] {
        let e = from_yaml(format!("{GOOD}{bad}\n").as_bytes()).unwrap_err();
        assert!(e.0.iter().any(|e| e.key == key), "{bad}: {e}");
    }
}

#[test]
fn app_is_loopback_or_a_unix_socket() {
    let unix = from_yaml(GOOD.replace("127.0.0.1:8081", "unix:/run/paymesh/app.sock").as_bytes()).unwrap();
    assert_eq!(unix.app, paymesh_process::Address::Unix("/run/paymesh/app.sock".into()));
    for bad in ["unix:app.sock", "unix:", "10.0.0.5:8081", "app:8081"] {
        let e = from_yaml(GOOD.replace("127.0.0.1:8081", bad).as_bytes()).unwrap_err();
        assert!(e.0.iter().any(|e| e.key == "app"), "{bad}: {e}");
    }
}

#[test]
fn client_series_are_all_by_default_or_a_list_of_configured_clients() {
    use super::ShownClients;
    let two = format!(
        "{GOOD}  - id: ops\n    api_key_sha256: \"{}\"\n    rate: {{ per_second: 10, burst: 10 }}\n",
        "ab".repeat(32)
    );
    assert_eq!(from_yaml(two.as_bytes()).unwrap().metrics.client_series, ShownClients::All);
    let all = from_yaml(format!("{two}metrics: {{ client_series: all }}\n").as_bytes()).unwrap();
    assert_eq!(all.metrics.client_series, ShownClients::All);
    let listed = from_yaml(format!("{two}metrics: {{ client_series: [ops] }}\n").as_bytes()).unwrap();
    assert_eq!(listed.metrics.client_series, ShownClients::Listed(vec!["ops".into()]));
    let none = from_yaml(format!("{two}metrics: {{ client_series: [] }}\n").as_bytes()).unwrap();
    assert_eq!(none.metrics.client_series, ShownClients::Listed(vec![]));
    let e = from_yaml(format!("{two}metrics: {{ client_series: [ops, stranger, ops] }}\n").as_bytes()).unwrap_err();
    let problems: Vec<(&str, &str)> = e.0.iter().map(|e| (e.key.as_str(), e.message.as_str())).collect();
    assert_eq!(
        problems,
        [
            ("metrics.client_series[1]", "\"stranger\" is not a configured client"),
            ("metrics.client_series[2]", "\"ops\" listed twice"),
        ]
    );
    let e = from_yaml(format!("{two}metrics: {{ client_series: some }}\n").as_bytes()).unwrap_err();
    assert_eq!(e.0[0].key, "metrics.client_series");
    assert!(e.0[0].message.contains("`all` or a list"), "{e}");
    for bad in ["metrics: { client_series: 5 }", "metrics: { client_series: { ops: 1 } }", "metrics: { charted: all }"]
    {
        let e = from_yaml(format!("{two}{bad}\n").as_bytes()).unwrap_err();
        assert!(e.to_string().contains("metrics"), "{bad}: {e}");
    }
}
