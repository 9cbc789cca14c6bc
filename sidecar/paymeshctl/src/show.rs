//! Human-readable renderings: the history table, switch events, state trees.

use anyhow::Context;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

fn time(v: &Value) -> String {
    if let Some(ms) = v["time_ms"].as_u64() {
        return humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string();
    }
    v["time"].as_str().unwrap_or("-").to_owned()
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn percent(v: &Value) -> String {
    match v {
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), crate::store::format_percent),
        Value::Null => "-".to_owned(),
        other => text(other),
    }
}

/// A feature's history as a table: when, what, whose override, from → to,
/// who did it (user@host pid) and why (what stopped a ramp).
pub fn history_table(entries: &[Value]) -> String {
    let header = ["TIME", "ACTION", "CLIENT", "FROM", "TO", "BY", "REASON"].map(str::to_owned);
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|v| {
            [
                time(v),
                text(&v["action"]),
                v["client"].as_str().unwrap_or("-").to_owned(),
                percent(&v["from"]),
                percent(&v["to"]),
                crate::store::actor_text(&v["by"]),
                v["reason"].as_str().unwrap_or("").to_owned(),
            ]
        })
        .collect();
    let mut widths = header.each_ref().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn event_line(v: &Value) -> String {
    let mut line = format!(
        "{}  {:<20} {:<17} {:<4} {}",
        time(v),
        text(&v["pod"]),
        text(&v["component"]),
        text(&v["state"]),
        text(&v["reason"])
    );
    if !v["readings"].is_null() {
        line.push_str(&format!("  readings={}", v["readings"]));
    }
    line
}

/// A JSON-lines events file and its rotations (`FILE.1`, `FILE.2`, … as the
/// sidecar's `overload.events_rotate` keeps them), oldest first; a line that
/// is not JSON is reported, not fatal.
pub fn events_from_file(path: &Path) -> anyhow::Result<Vec<Value>> {
    let rotated = (1..).map(|n| paymesh_vocab::files::numbered(path, n)).take_while(|p| p.exists());
    let mut files: Vec<_> = rotated.collect();
    files.reverse();
    files.push(path.to_owned());
    let mut out = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
        out.extend(text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).filter_map(|(n, l)| {
            match serde_json::from_str(l) {
                Ok(v) => Some(v),
                Err(e) => {
                    eprintln!("warning: {}:{}: not a JSON record ({e})", file.display(), n + 1);
                    None
                }
            }
        }));
    }
    Ok(out)
}

pub fn events_from_etcd(kvs: Vec<(String, Vec<u8>)>) -> Vec<Value> {
    kvs.into_iter()
        .filter_map(|(key, value)| match serde_json::from_slice(&value) {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("warning: {key}: not a JSON record ({e})");
                None
            }
        })
        .collect()
}

/// An indented tree of a JSON document.
pub fn tree(v: &Value) -> String {
    let mut out = String::new();
    walk(v, 0, &mut out);
    out
}

fn walk(v: &Value, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        walk(v, depth + 1, out);
                    }
                    Value::Array(a) if a.iter().any(|x| x.is_object()) => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        walk(v, depth + 1, out);
                    }
                    other => out.push_str(&format!("{pad}{k}: {}\n", text(other))),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                out.push_str(&format!("{pad}-\n"));
                walk(item, depth + 1, out);
            }
        }
        other => out.push_str(&format!("{pad}{}\n", text(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_a_state_tree() {
        let t = tree(
            &json!({"version": 3, "migration": {"charge": {"percent": 12.5, "source": "etcd"}}, "clients": [{"id": "a"}]}),
        );
        assert!(t.contains("version: 3\n"));
        assert!(t.contains("migration:\n  charge:\n    percent: 12.5\n    source: etcd\n"), "{t}");
        assert!(t.contains("clients:\n  -\n    id: a\n"), "{t}");
    }

    #[test]
    fn renders_history_and_events() {
        let h = history_table(&[
            json!({"time_ms": 0, "action": "step", "from": 0, "to": 10.0, "by": {"user": "ann", "host": "h", "pid": 7}}),
            json!({"time_ms": 0, "action": "preempted", "client": "ops", "from": 20, "to": "0", "reason": "set by bob"}),
        ]);
        let lines: Vec<&str> = h.lines().collect();
        assert!(lines[0].starts_with("TIME") && lines[0].ends_with("REASON"), "{h}");
        assert!(lines[1].contains("step") && lines[1].contains("ann@h pid 7") && lines[1].contains(" 10 "), "{h}");
        assert!(lines[2].contains("preempted  ops") && lines[2].ends_with("set by bob"), "{h}");
        let e = event_line(
            &json!({"time": "t", "pod": "p", "component": "access_log", "state": "off", "reason": "overload"}),
        );
        assert!(e.contains("access_log") && e.contains("off") && e.contains("overload"));
    }

    #[test]
    fn events_files_tolerate_garbage_lines() {
        let dir = std::env::temp_dir().join(format!("paymeshctl-events-{}", std::process::id()));
        std::fs::write(&dir, "{\"pod\":\"a\"}\nnot json\n\n{\"pod\":\"b\"}\n").unwrap();
        let events = events_from_file(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn events_files_include_their_rotations_oldest_first() {
        let dir = std::env::temp_dir().join(format!("paymeshctl-rotated-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("switch-events.jsonl");
        std::fs::write(dir.join("switch-events.jsonl.2"), "{\"n\":1}\n").unwrap();
        std::fs::write(dir.join("switch-events.jsonl.1"), "{\"n\":2}\n").unwrap();
        std::fs::write(&path, "{\"n\":3}\n").unwrap();
        let n: Vec<_> = events_from_file(&path).unwrap().iter().map(|v| v["n"].as_u64().unwrap()).collect();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(n, [1, 2, 3]);
    }
}
