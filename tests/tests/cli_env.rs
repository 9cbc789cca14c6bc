//! Every flag of every binary reads a `PAYMESH_*` environment variable, as
//! the README says, so a Kubernetes pod spec can configure any of them.
//!
//! The test reads what clap itself prints: each binary's `--help`, and
//! every `paymeshctl` subcommand's (found from the help, so a new one is
//! checked too). A flag whose entry has no `[env: PAYMESH_…]` fails it,
//! unless it is one of `EXCEPTIONS`, which the README lists by name.

use paymesh_system_tests::bin;
use std::process::Command;

const BINARIES: &[&str] =
    &["paymesh-sidecar", "paymesh-app", "paymesh-orchestrator", "paymesh-telemetryd", "paymeshctl"];

/// Flags that print something and exit, and read nothing else.
const EXCEPTIONS: &[&str] = &["--help", "--version"];

/// One option of a help text: its long flag and the whole entry (the flag
/// line and its description lines).
#[derive(Debug)]
struct Entry {
    flag: String,
    text: String,
}

/// The `--help` text of `binary` with `subcommands`.
fn help(binary: &str, subcommands: &[String]) -> String {
    let mut cmd = Command::new(bin(binary));
    cmd.args(subcommands).arg("--help");
    // A variable set in the test's environment would be printed as its
    // value; none of ours may leak into the help or change its shape.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PAYMESH_") {
            cmd.env_remove(&name);
        }
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("{binary} {subcommands:?} --help: {e}"));
    assert!(out.status.success(), "{binary} {subcommands:?} --help failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// The lines of the section `title` (e.g. `Options:`), up to the next
/// unindented line.
fn section<'a>(help: &'a str, title: &str) -> Vec<&'a str> {
    help.lines().skip_while(|l| *l != title).skip(1).take_while(|l| l.is_empty() || l.starts_with(' ')).collect()
}

/// The options of a help text. An entry starts at a line indented by at
/// most six spaces whose text starts with `-` (`  -h, --help`, `      --config
/// <FILE>`); descriptions are indented further (or follow on the same line).
fn options(help: &str) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    for line in section(help, "Options:") {
        let indent = line.len() - line.trim_start().len();
        if indent <= 6 && line.trim_start().starts_with('-') {
            let flag = line
                .split([' ', ','])
                .find(|w| w.starts_with("--"))
                .unwrap_or_else(|| panic!("an option without a long flag: {line:?}"))
                .split('=')
                .next()
                .expect("split yields one part")
                .to_owned();
            entries.push(Entry { flag, text: line.to_owned() });
        } else if let Some(e) = entries.last_mut() {
            e.text.push('\n');
            e.text.push_str(line);
        }
    }
    entries
}

/// The subcommands a help text lists, without clap's own `help`.
fn subcommands(help: &str) -> Vec<String> {
    section(help, "Commands:")
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// The variable an entry names, if any.
fn env_var(entry: &Entry) -> Option<&str> {
    let start = entry.text.find("[env: ")? + "[env: ".len();
    let rest = &entry.text[start..];
    Some(&rest[..rest.find(['=', ']'])?])
}

/// Every command line of `binary`: itself, then each subcommand, depth first.
fn command_lines(binary: &str) -> Vec<(Vec<String>, String)> {
    let mut found = Vec::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let text = help(binary, &path);
        for sub in subcommands(&text) {
            let mut next = path.clone();
            next.push(sub);
            todo.push(next);
        }
        found.push((path, text));
    }
    found
}

#[test]
fn every_flag_of_every_binary_reads_a_paymesh_variable() {
    let mut missing = Vec::new();
    let mut checked = 0;
    for binary in BINARIES {
        let lines = command_lines(binary);
        if *binary == "paymeshctl" {
            // The walk must reach the nested subcommands, or it checks nothing there.
            assert!(lines.iter().any(|(p, _)| p == &["migration", "ramp"]), "no `migration ramp` found: {lines:?}");
        }
        for (path, text) in lines {
            let entries = options(&text);
            assert!(!entries.is_empty(), "{binary} {path:?}: no options parsed from\n{text}");
            for entry in entries {
                if EXCEPTIONS.contains(&entry.flag.as_str()) {
                    continue;
                }
                checked += 1;
                match env_var(&entry) {
                    Some(var) if var.starts_with("PAYMESH_") => {}
                    _ => missing.push(
                        [binary.to_string()]
                            .into_iter()
                            .chain(path.clone())
                            .chain([entry.flag])
                            .collect::<Vec<_>>()
                            .join(" "),
                    ),
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "flags without a PAYMESH_* variable (add `env = \"PAYMESH_…\"`):\n{}",
        missing.join("\n")
    );
    assert!(checked > 30, "only {checked} flags checked: is the help parser still right?");
}

#[test]
fn the_readme_names_the_exceptions() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README.md");
    for flag in EXCEPTIONS {
        assert!(readme.contains(&format!("`{flag}`")), "README.md does not name the exception {flag}");
    }
}

#[test]
fn the_parser_reads_both_help_layouts() {
    let help = "Usage: x [OPTIONS]\n\nOptions:\n      --config <FILE>\n          Configuration file\n          \n          \
                [env: PAYMESH_SIDECAR_CONFIG=]\n\n      --check-config <FILE>\n          Validate FILE\n\n  -h, --help\n          \
                Print help\nCommands:\n  get  Read\n  help  Print this\n";
    let entries = options(help);
    let flags: Vec<_> = entries.iter().map(|e| (e.flag.as_str(), env_var(e))).collect();
    assert_eq!(flags, [("--config", Some("PAYMESH_SIDECAR_CONFIG")), ("--check-config", None), ("--help", None)]);
    assert_eq!(subcommands(help), ["get"]);
    let compact = "Options:\n      --listen <LISTEN>  Address [env: PAYMESH_APP_LISTEN=] [default: 127.0.0.1:8081]\n  -V, --version      Print version\n";
    let entries = options(compact);
    assert_eq!(env_var(&entries[0]), Some("PAYMESH_APP_LISTEN"));
    assert_eq!(entries[1].flag, "--version");
}
