//! Fuzz targets for every parser of untrusted input, as plain functions.
//!
//! Each function feeds its bytes to the project's real code (never a copy)
//! and asserts the properties that matter, not only "no panic": a refusal
//! names what was wrong, an accepted config round-trips, a parsed percent is
//! within [0, 100], an accepted amount converts back exactly. The binaries
//! in `src/bin/` hand them to honggfuzz (`make fuzz`); `tests/corpus.rs`
//! runs them over the committed corpora in `cargo test`, so a target cannot
//! rot and every crash once found stays fixed.

pub mod mutants;

use http::{HeaderMap, HeaderName, HeaderValue};
use paymesh_adapters::ErrorType;
use paymesh_adapters::orchestration::{Answer, AnswerKind, read_answer};
use paymesh_app::validate;
use paymesh_vocab::{ApiPath, Feature, IdKind};

/// A target: bytes in, a panic on a broken property.
pub type Target = fn(&[u8]);

/// Every target, by name (the names of `src/bin/` and `corpus/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("etcd_values", etcd_values),
    ("telemetry", telemetry),
    ("request_headers", request_headers),
    ("app_bodies", app_bodies),
    ("orchestration_answers", orchestration_answers),
    ("prom_text", prom_text),
];

/// The sidecar config: YAML → typed config → validation, as `--config`,
/// `--check-config` and hot reload read it.
pub fn config(data: &[u8]) {
    match paymesh_sidecar::config::from_yaml(data) {
        Ok(config) => {
            // Accepted means accepted in any YAML spelling: re-emitted from
            // its parsed tree, the document reads as the same config.
            let tree: serde_yaml::Value = serde_yaml::from_slice(data).expect("accepted config is YAML");
            let again = serde_yaml::to_string(&tree).expect("a YAML tree serializes");
            let reread = paymesh_sidecar::config::from_yaml(again.as_bytes());
            // serde_yaml reads an empty value (`rate:`) as an empty map but
            // re-emits it as `null`, which the typed config rightly refuses:
            // only that spelling may differ.
            if !has_null(&tree) {
                assert_eq!(reread.as_ref().ok(), Some(&config), "accepted config does not round-trip: {again}");
            }
            assert!(!config.clients.is_empty(), "a config without clients was accepted");
        }
        Err(errors) => {
            // The --check-config report: one line per problem, each naming a key.
            assert!(!errors.0.is_empty(), "refused with no reason");
            for e in &errors.0 {
                assert!(!e.key.is_empty(), "a problem without a key: {e}");
                assert!(!e.message.trim().is_empty(), "a problem without a message for {}", e.key);
            }
            let report = errors.to_string();
            assert_eq!(report.lines().count(), report.lines().filter(|l| !l.is_empty()).count());
        }
    }
}

fn has_null(v: &serde_yaml::Value) -> bool {
    match v {
        serde_yaml::Value::Null => true,
        serde_yaml::Value::Sequence(s) => s.iter().any(has_null),
        serde_yaml::Value::Mapping(m) => m.iter().any(|(k, v)| has_null(k) || has_null(v)),
        serde_yaml::Value::Tagged(t) => has_null(&t.value),
        _ => false,
    }
}

/// Values as they land from etcd: migration percents (feature keys and
/// per-client overrides share the parser) and the last-known-good cache
/// file that mirrors them.
pub fn etcd_values(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match paymesh_sidecar::migration::parse_percent(&text) {
        Ok(bp) => {
            assert!(bp <= 10_000, "{text:?} parsed to {bp} basis points, above 100 %");
            // What the sidecar applies reads back as the same value.
            let shown = format!("{}", f64::from(bp) / 100.0);
            assert_eq!(paymesh_sidecar::migration::parse_percent(&shown), Ok(bp), "{shown}");
        }
        Err(message) => assert!(!message.is_empty(), "{text:?} refused without a reason"),
    }
    // The cache file is checked like etcd values; what it accepts is in
    // range and survives the sidecar's own store → load.
    if let Ok(cache) = paymesh_sidecar::migration::Cache::parse(data) {
        let bp = |c: &paymesh_sidecar::migration::Cache| -> Vec<u32> {
            let features = [c.charge, c.refund, c.disbursement].into_iter().flatten();
            let clients = c.clients.values().flat_map(|m| m.values().copied());
            features
                .chain(clients)
                .map(|p| paymesh_sidecar::migration::parse_percent(&p.to_string()).expect("checked"))
                .collect()
        };
        let values = bp(&cache);
        assert!(values.iter().all(|v| *v <= 10_000), "{values:?}");
        let bytes = serde_json::to_vec_pretty(&cache).expect("a cache serializes");
        let again = paymesh_sidecar::migration::Cache::parse(&bytes).expect("a stored cache loads");
        assert_eq!(bp(&again), values);
    }
    fleet_record(data);
}

/// A fleet member record (`<prefix>/fleet/<pod>`, written by any holder of
/// the prefix): what is accepted has finite, bounded demand, survives the
/// sidecar's own write → read, and cannot move the split off the rate or
/// below another member's floor.
fn fleet_record(data: &[u8]) {
    use paymesh_sidecar::fleet::share::{MAX_DEMAND, allocate, parse_record};
    let pod = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v["pod"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "pod".to_owned());
    let Ok(record) = parse_record(&pod, data) else { return };
    let again = parse_record(&pod, &serde_json::to_vec(&record).expect("a record serializes")).expect("re-read");
    assert_eq!(again, record);
    for id in record.clients.keys() {
        let Some(d) = record.demand(id) else { continue };
        assert!(d.is_finite() && (0.0..=MAX_DEMAND).contains(&d), "demand {d}");
        let shares = allocate(300.0, 0.1, &[Some(d), Some(10.0), None]);
        let sum: f64 = shares.iter().sum();
        assert!((sum - 300.0).abs() < 1e-6, "{shares:?}");
        assert!(shares[1] >= 10.0 - 1e-9, "a member lost its floor: {shares:?}");
    }
}

/// The telemetry file the daemon writes and the sidecar reads.
pub fn telemetry(data: &[u8]) {
    match paymesh_telemetryd::TelemetrySnapshot::parse(data) {
        Ok(s) => {
            assert!(s.validate().is_ok());
            for (name, v) in [("cpu_percent", s.cpu_percent), ("mem_used_percent", s.mem_used_percent)] {
                assert!((0.0..=100.0).contains(&v), "{name} = {v} accepted");
            }
            for v in [s.load1, s.load5, s.load15] {
                assert!(v.is_finite() && v >= 0.0, "load {v} accepted");
            }
            assert!(s.interval_ms > 0 && s.cpus > 0);
            // Staleness and the future check are total over any timestamp.
            for now in [0, s.sampled_at_ms, u64::MAX] {
                let _ = (s.is_stale(now), s.is_future(now));
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// Request-derived values the sidecar parses: the bearer token, the
/// `x-request-id` it keeps or replaces, the `Connection` header's tokens,
/// and the path → feature reading it shares with the app.
///
/// Input: lines `name: value`; the first line is the path.
pub fn request_headers(data: &[u8]) {
    let mut lines = data.split(|b| *b == b'\n');
    let path = String::from_utf8_lossy(lines.next().unwrap_or_default());
    path_reading(&path);

    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(line[colon + 1..].trim_ascii()))
        else {
            continue;
        };
        headers.append(name, value);
    }
    for value in headers.get_all(http::header::AUTHORIZATION) {
        if let Some(token) = paymesh_sidecar::layers::auth::bearer_token(value) {
            assert!(!token.is_empty(), "an empty bearer token");
            assert_eq!(token, token.trim_ascii(), "a token with surrounding whitespace");
            assert!(value.as_bytes().len() >= token.len() + 7);
        }
    }
    for value in headers.get_all("x-request-id") {
        if paymesh_sidecar::layers::headers::acceptable_request_id(value) {
            // Kept ids are logged and echoed: short, visible ASCII only.
            let b = value.as_bytes();
            assert!(!b.is_empty() && b.len() <= 128 && b.iter().all(u8::is_ascii_graphic));
        }
    }
    let listed: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| HeaderName::from_bytes(t.as_bytes()).is_ok())
        .collect();
    paymesh_sidecar::layers::headers::strip_hop_by_hop(&mut headers);
    for gone in ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"] {
        assert!(!headers.contains_key(gone), "{gone} survived hop-by-hop stripping");
    }
    for name in listed {
        assert!(!headers.contains_key(name.as_str()), "{name}, listed in Connection, survived");
    }
    paymesh_sidecar::layers::headers::strip_paymesh(&mut headers);
    assert!(headers.keys().all(|k| !k.as_str().starts_with(paymesh_vocab::headers::PAYMESH_PREFIX)));
}

/// A path the sidecar routes on and the app serves: canonical or nothing.
fn path_reading(path: &str) {
    let feature = Feature::from_path(path);
    match ApiPath::parse(path) {
        Some(p) => {
            assert_eq!(p.feature, feature);
            assert_ne!(p.feature, Feature::Other);
            // Canonical: the parts spell the path back exactly.
            let collection = p.feature.collection().expect("a feature path has a collection");
            let spelled = match p.id {
                Some(id) => format!("/v1/{collection}/{id}"),
                None => format!("/v1/{collection}"),
            };
            assert_eq!(spelled, path);
            if let Some(id) = p.id {
                assert!(!id.is_empty() && !id.contains('/') && id != "." && id != "..");
                // The app's id check agrees with the kind's format.
                let kind = p.feature.id_kind().expect("a feature has an id kind");
                assert_eq!(validate::path_id(p.feature, id).is_ok(), kind.matches(id), "{id:?}");
            }
        }
        None => assert_eq!(feature, Feature::Other, "{path:?}"),
    }
}

/// The app's request bodies (charge, refund, disbursement JSON) and ids.
///
/// Input: the first byte picks the operation, the rest is the body.
pub fn app_bodies(data: &[u8]) {
    let Some((which, body)) = data.split_first() else { return };
    let (operation, fields) = match which % 3 {
        0 => ("charge", validate::CHARGE_FIELDS),
        1 => ("refund", validate::REFUND_FIELDS),
        _ => ("disbursement", validate::DISBURSEMENT_FIELDS),
    };
    let parsed = validate::parse(operation, body, fields);
    let result = parsed.as_ref().map_err(Clone::clone).and_then(|b| match operation {
        "charge" => validate::charge(b).map(|c| {
            assert!((1..=validate::MAX_AMOUNT).contains(&c.amount), "amount {} accepted", c.amount);
            assert!(paymesh_adapters::currency::is_known(&c.currency), "currency {:?} accepted", c.currency);
            assert!(!c.source.is_empty());
        }),
        "refund" => validate::refund(b).map(|r| {
            assert!(IdKind::Charge.matches(&r.charge), "charge id {:?} accepted", r.charge);
            assert!(r.amount.is_none_or(|a| (1..=validate::MAX_AMOUNT).contains(&a)));
        }),
        _ => validate::disbursement(b).map(|d| {
            assert!((1..=validate::MAX_AMOUNT).contains(&d.amount));
            assert!(d.destination.starts_with("acct_"));
        }),
    });
    match result {
        Ok(()) => {
            let b = parsed.as_ref().expect("a validated body was parsed");
            // The fingerprint is a function of the body: a replay with the
            // same JSON (any spelling) must match it.
            let again = validate::parse(operation, body, fields).expect("parses twice");
            assert_eq!(again.fingerprint, b.fingerprint);
        }
        Err(e) => {
            assert_eq!(e.status, 400, "{e}");
            assert_eq!(e.kind, ErrorType::InvalidRequestError);
            if let Some(param) = &e.param {
                // An unknown field is named as sent; any other refusal names
                // one of the operation's own fields.
                let named = if e.code == "parameter_unknown" {
                    !fields.contains(&param.as_str())
                } else {
                    fields.contains(&param.as_str())
                };
                assert!(named, "{}: param {param:?}", e.code);
            }
            let shape: serde_json::Value = serde_json::from_slice(&e.to_body()).expect("error body is JSON");
            assert_eq!(shape["error"]["type"], "invalid_request_error");
            assert!(shape["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }
    // The same bytes as a path id and as an Idempotency-Key.
    if let Ok(text) = std::str::from_utf8(body) {
        for feature in Feature::MIGRATING {
            if let Ok(id) = validate::path_id(feature, text) {
                assert!(feature.id_kind().is_some_and(|k| k.matches(id)));
            }
        }
    }
    if let Ok(v) = HeaderValue::from_bytes(body) {
        if let Ok(k) = validate::idempotency_key(Some(&v)) {
            assert!(!k.is_empty() && k.len() <= validate::MAX_KEY_LEN && k.bytes().all(|b| b.is_ascii_graphic()));
        }
    }
}

/// Answers of the orchestration service as the adapter reads them: a
/// remote service's reply is untrusted input too. Amounts in major units
/// must convert exactly or be refused (502), never rounded.
///
/// Input: the first byte picks the answer kind, the rest is the body.
pub fn orchestration_answers(data: &[u8]) {
    let Some((which, body)) = data.split_first() else { return };
    let kind =
        [AnswerKind::Execution, AnswerKind::Charge, AnswerKind::Refund, AnswerKind::Payout][usize::from(*which % 4)];
    match read_answer(kind, body) {
        Ok(Answer::Charge(c)) => {
            assert_exact(body, "amount", c.amount, &c.currency);
            assert!(c.amount_refunded <= c.amount, "refunded {} of {}", c.amount_refunded, c.amount);
            assert_eq!(c.refunded, c.amount_refunded == c.amount);
        }
        Ok(Answer::Refund(r)) => assert_exact(body, "amount", r.amount, &r.currency),
        Ok(Answer::Disbursement(d)) => assert_exact(body, "amount", d.amount, &d.currency),
        Ok(Answer::Execution { .. }) => {}
        Err(e) => {
            assert_eq!(e.status, 502, "{e}");
            assert_eq!(e.kind, ErrorType::ApiError);
        }
    }
    // The currency conversion on its own: what converts, converts back.
    if let Ok(text) = std::str::from_utf8(body) {
        if let Some((value, currency)) = text.split_once(' ') {
            if let Some(minor) = paymesh_adapters::currency::to_minor(value, currency) {
                let major = paymesh_adapters::currency::to_major(minor, currency).expect("a known currency");
                assert_eq!(paymesh_adapters::currency::to_minor(&major, currency), Some(minor), "{value} {currency}");
            }
        }
    }
}

/// An accepted amount converts back to the service's decimal exactly.
fn assert_exact(body: &[u8], field: &str, minor: u64, currency: &str) {
    // serde skips the fields it does not read without checking their
    // escapes, so an accepted answer may still be no valid JSON Value.
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return };
    let value = v[field]["value"].as_str().expect("money has a value");
    assert_eq!(paymesh_adapters::currency::to_minor(value, currency), Some(minor), "{value} {currency}");
    let major = paymesh_adapters::currency::to_major(minor, currency).expect("a known currency");
    assert_eq!(paymesh_adapters::currency::to_minor(&major, currency), Some(minor));
}

/// What `paymeshctl migration ramp` reads to judge a step: a sidecar's
/// Prometheus text (`--sidecars`) and a Prometheus server's answers
/// (`--prometheus`). Both come over the network: a figure that cannot be
/// trusted must be no evidence, never a NaN that passes every guard.
///
/// Input: the first byte picks the reader, the rest is the text.
pub fn prom_text(data: &[u8]) {
    use paymeshctl::prom::{View, scalar};
    let Some((which, body)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(body);
    if which % 2 == 0 {
        let client = (which % 4 == 2).then_some("checkout");
        let v = View::parse(&text, "charge", client);
        for f in [&v.orchestration, &v.legacy] {
            for q in [0.5, 0.99, 1.0] {
                if let Some(p) = f.quantile(q) {
                    assert!(p.is_finite() && p >= 0.0, "quantile {q} = {p}");
                    let top = f.buckets.keys().map(|le| le.0).filter(|b| b.is_finite()).fold(0.0, f64::max);
                    assert!(p <= top, "quantile {q} = {p} above the largest bound {top}");
                }
            }
            let nothing = f.since(f);
            assert!(nothing.requests == 0.0 || !f.requests.is_finite(), "{nothing:?}");
        }
    } else if let Ok(Some(v)) = scalar(&text) {
        let answer: serde_json::Value = serde_json::from_str(&text).expect("an accepted answer is JSON");
        assert_eq!(answer["status"], "success");
        let _ = v;
    }
}
