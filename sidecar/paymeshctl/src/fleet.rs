//! `paymeshctl fleet`: the fleet's members and, per `scope: fleet` client,
//! each member's demand and share, read from `<prefix>/fleet/` in etcd.
//!
//! Records are parsed with the sidecars' own parser (`paymesh_vocab::fleet`), so a record the
//! sidecars refuse is shown as refused here too, with the reason.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use paymesh_vocab::fleet::{MemberRecord, parse_record};
use serde_json::{Value, json};

/// Every member record under `dir` (`<prefix>/fleet/`), parsed or refused.
pub fn parse(dir: &str, kvs: Vec<(String, Vec<u8>)>) -> Vec<(String, Result<MemberRecord, String>)> {
    kvs.into_iter()
        .map(|(key, value)| {
            let pod = key.strip_prefix(dir).unwrap_or(&key).to_owned();
            let parsed = parse_record(&pod, &value).map_err(|e| e.to_string());
            (pod, parsed)
        })
        .collect()
}

/// Per client: (pod, demand, admitted, refused, share) for each member
/// that lists the client, in requests per second.
type ByClient<'a> = BTreeMap<&'a str, Vec<(&'a str, Option<f64>, f64, f64, f64)>>;

fn by_client(members: &[(String, Result<MemberRecord, String>)]) -> ByClient<'_> {
    let mut out: ByClient<'_> = BTreeMap::new();
    for (pod, r) in members {
        let Ok(r) = r else { continue };
        let secs = (r.interval_ms as f64 / 1000.0).max(1e-3);
        for (id, c) in &r.clients {
            let (admitted, refused) = if r.joining() { (0.0, 0.0) } else { (c.admitted / secs, c.refused / secs) };
            out.entry(id.as_str()).or_default().push((pod.as_str(), r.demand(id), admitted, refused, c.share));
        }
    }
    out
}

/// The table `paymeshctl fleet` prints.
pub fn table(members: &[(String, Result<MemberRecord, String>)], now_ms: u64) -> String {
    let mut s = String::new();
    let good = members.iter().filter(|(_, r)| r.is_ok()).count();
    let _ = writeln!(s, "members: {good}");
    let _ = writeln!(s, "{:<32} {:>10} {:>8}  state", "POD", "REPORTED", "REPORTS");
    for (pod, r) in members {
        match r {
            Ok(r) => {
                let age = humantime::format_duration(Duration::from_millis(now_ms.saturating_sub(r.at_ms) / 10 * 10));
                let state = if r.joining() { "joining" } else { "reporting" };
                let _ = writeln!(s, "{pod:<32} {:>10} {:>8}  {state}", format!("{age} ago"), r.reports);
            }
            Err(e) => {
                let _ = writeln!(s, "{pod:<32} {:>10} {:>8}  REFUSED: {e}", "-", "-");
            }
        }
    }
    for (client, rows) in by_client(members) {
        let _ = writeln!(s, "\nclient {client}");
        let _ =
            writeln!(s, "{:<32} {:>10} {:>10} {:>10} {:>10}", "POD", "DEMAND/s", "ADMITTED/s", "REFUSED/s", "SHARE/s");
        let mut total = [0.0f64; 4];
        for (pod, demand, admitted, refused, share) in &rows {
            let d = demand.map_or("joining".to_owned(), |d| format!("{d:.1}"));
            let _ = writeln!(s, "{pod:<32} {d:>10} {admitted:>10.1} {refused:>10.1} {share:>10.1}");
            for (t, v) in total.iter_mut().zip([demand.unwrap_or(0.0), *admitted, *refused, *share]) {
                *t += v;
            }
        }
        let _ = writeln!(
            s,
            "{:<32} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            "(fleet)", total[0], total[1], total[2], total[3]
        );
    }
    s
}

/// The same as JSON, for scripts.
pub fn to_json(members: &[(String, Result<MemberRecord, String>)]) -> Value {
    let list: Vec<Value> = members
        .iter()
        .map(|(pod, r)| match r {
            Ok(r) => json!({ "pod": pod, "record": r }),
            Err(e) => json!({ "pod": pod, "refused": e }),
        })
        .collect();
    let clients: serde_json::Map<String, Value> = by_client(members)
        .into_iter()
        .map(|(id, rows)| {
            let rows: Vec<Value> = rows
                .iter()
                .map(|(pod, d, a, r, sh)| {
                    json!({ "pod": pod, "demand_per_second": d, "admitted_per_second": a,
                            "refused_per_second": r, "share_per_second": sh })
                })
                .collect();
            (id.to_owned(), Value::Array(rows))
        })
        .collect();
    json!({ "members": list, "clients": clients })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_members_demand_and_refusals() {
        let good = br#"{"v":1,"pod":"a","at_ms":1000,"interval_ms":500,"reports":4,"clients":{"checkout":{"admitted":50,"refused":100,"share":100}}}"#;
        let joining = br#"{"v":1,"pod":"b","at_ms":1000,"interval_ms":0,"reports":0,"clients":{"checkout":{"admitted":0,"refused":0,"share":75}}}"#;
        let kvs = vec![
            ("/paymesh/fleet/a".to_owned(), good.to_vec()),
            ("/paymesh/fleet/b".to_owned(), joining.to_vec()),
            ("/paymesh/fleet/c".to_owned(), b"{nope".to_vec()),
        ];
        let members = parse("/paymesh/fleet/", kvs);
        let t = table(&members, 1500);
        assert!(t.starts_with("members: 2\n"), "{t}");
        assert!(t.contains("REFUSED: not a member record"), "{t}");
        assert!(t.contains("client checkout"), "{t}");
        assert!(t.contains("300.0") && t.contains("joining"), "{t}");
        let j = to_json(&members);
        assert_eq!(j["clients"]["checkout"][0]["demand_per_second"], 300.0);
        assert_eq!(j["clients"]["checkout"][0]["admitted_per_second"], 100.0);
    }
}
