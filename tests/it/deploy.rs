//! The files in `deploy/`: the systemd unit passes `systemd-analyze`, the alert rules
//! pass `promtool` and their unit tests, and the dashboard and rules name only
//! metrics the service exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use booking_sync::metrics as m;

const BINARY: &str = env!("CARGO_BIN_EXE_booking-sync");
/// The exposure `systemd-analyze security` may rate the unit at most ("OK").
const MAX_EXPOSURE: f64 = 2.0;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn run(program: &str, args: &[&str], dir: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|err| panic!("{program} runs (scripts/test installs it): {err}"))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = deploy("prometheus");

    let check = run(
        "promtool",
        &["check", "rules", "booking-sync.rules.yml"],
        &dir,
    );
    let tests = run(
        "promtool",
        &["test", "rules", "booking-sync.rules.test.yml"],
        &dir,
    );

    assert!(check.status.success(), "{}", text(&check));
    assert!(tests.status.success(), "{}", text(&tests));
}

/// The unit with the installed binary's path pointing at the one just built, as an
/// instance file systemd-analyze can load.
fn instance_unit(dir: &Path) -> PathBuf {
    let template =
        std::fs::read_to_string(deploy("booking-sync@.service")).expect("the unit is readable");
    let path = dir.join("booking-sync@main.service");
    std::fs::write(&path, template.replace("/usr/bin/booking-sync", BINARY)).expect("unit written");
    path
}

#[test]
fn the_unit_passes_systemd_analyze_verify_and_rates_at_most_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = instance_unit(dir.path());
    let unit = unit.to_str().expect("a UTF-8 path");

    let verify = run("systemd-analyze", &["verify", unit], dir.path());
    let security = run(
        "systemd-analyze",
        &["security", "--offline=true", "--no-pager", unit],
        dir.path(),
    );

    assert!(verify.status.success(), "{}", text(&verify));
    assert!(text(&verify).trim().is_empty(), "{}", text(&verify));
    let report = text(&security);
    let exposure: f64 = report
        .lines()
        .find_map(|line| {
            let rest = line.split("Overall exposure level for").nth(1)?;
            rest.split(':')
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no exposure level in: {report}"));
    assert!(exposure <= MAX_EXPOSURE, "exposure {exposure}: {report}");
}

#[test]
fn the_unit_restarts_on_failure_but_not_on_a_configuration_error() {
    let unit =
        std::fs::read_to_string(deploy("booking-sync@.service")).expect("the unit is readable");
    let value = |key: &str| -> Vec<&str> {
        unit.lines()
            .filter_map(|line| line.strip_prefix(&format!("{key}=")))
            .collect()
    };

    assert_eq!(value("Type"), ["notify"]);
    assert_eq!(value("Restart"), ["on-failure"]);
    assert_eq!(value("RestartPreventExitStatus"), ["78"]);
    assert_eq!(value("WatchdogSec"), ["30"]);
    assert!(value("ExecStartPre")[0].ends_with("check-config"));
    assert!(
        value("ExecStart")[0].contains("%i.toml"),
        "the instance picks the file"
    );
    assert_eq!(value("LoadCredential").len(), 2);
    let grace: u64 = value("ExecStart")[0]
        .split("--grace-seconds ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("a grace period");
    let stop: u64 = value("TimeoutStopSec")[0].parse().expect("seconds");
    assert!(
        grace < stop,
        "the drain ({grace}s) must end before systemd kills ({stop}s)"
    );
}

/// Every `booking_sync_*` name in `text`, histogram suffixes removed.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("booking_sync_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| m::ALL.contains(base))
            .unwrap_or(name);
        names.insert(base.to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_dashboard_and_the_rules_name_only_exported_metrics() {
    let dashboard = std::fs::read_to_string(deploy("grafana/booking-sync-dashboard.json"))
        .expect("the dashboard is readable");
    let rules = std::fs::read_to_string(deploy("prometheus/booking-sync.rules.yml"))
        .expect("the rules are readable");
    let parsed: serde_json::Value =
        serde_json::from_str(&dashboard).expect("the dashboard is JSON");

    for (what, text) in [("dashboard", &dashboard), ("rules", &rules)] {
        for name in metric_names(text) {
            assert!(m::ALL.contains(&name.as_str()), "{what} names {name}");
        }
    }
    let titles: Vec<String> = parsed["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter_map(|panel| panel["title"].as_str().map(str::to_lowercase))
        .collect();
    for wanted in [
        "lag",
        "coverage",
        "meeting writes",
        "errors",
        "throttling",
        "drift",
    ] {
        assert!(
            titles.iter().any(|title| title.contains(wanted)),
            "no panel about {wanted}: {titles:?}"
        );
    }
    let used = metric_names(&dashboard);
    for name in [
        m::SYNC_LAG,
        m::SUBSCRIPTIONS_ACTIVE,
        m::EWS_THROTTLED,
        m::RESYNC_DRIFT,
    ] {
        assert!(used.contains(name), "the dashboard does not show {name}");
    }
}
