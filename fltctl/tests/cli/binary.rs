//! The real `fltctl` binary: process environment, exit codes, and real (not virtual) waiting
//! with stdout on a pipe, where no progress may appear.

use super::harness::*;
use std::process::Command;

fn fltctl_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fltctl"));
    // Keep the caller's FLTCTL_* out of the test.
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("FLTCTL_")) {
        c.env_remove(k);
    }
    c
}

#[test]
fn the_binary_waits_silently_on_a_pipe_and_reads_fltctl_variables() {
    let api = cluster();
    api.unit("a.service", HELLO, "inactive", "inactive");
    api.lock().lag = 3;
    let out = fltctl_bin()
        .env("FLTCTL_ENDPOINT", &api.url)
        .args(["load", "a.service"])
        .output()
        .expect("run fltctl");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Unit a.service loaded on 113f16a7.../172.17.8.103\n"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn the_binary_exit_codes() {
    let out = fltctl_bin().arg("nonsense").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let out = fltctl_bin().arg("verify").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let out = fltctl_bin()
        .args(["--endpoint=unix:///nonexistent.sock", "cat", "x"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let out = fltctl_bin().arg("-v").output().expect("run");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("fltctl version {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn debug_logs_each_request_to_stderr() {
    let api = cluster();
    let out = fltctl_bin()
        .args([
            &format!("--endpoint={}", api.url),
            "--debug",
            "list-machines",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "DEBUG client.rs: Get {}/flt/v1/machines -> 200",
            api.url
        )),
        "{err}"
    );
    // stdout keeps only the table.
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("MACHINE\t"));
}
