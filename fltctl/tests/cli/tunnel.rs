//! `--tunnel`: the API carried over a child process's stdio. A TEST DOUBLE of OpenSSH (a shell
//! script named `ssh` first on PATH, which drops ssh's options and runs the remote command
//! locally) stands in for the bastion, so the real binary's `fd-forward` carries the requests.

use super::api_double::ApiDouble;
use super::harness::*;
use fltctl::client::{Api, Endpoint, HttpApi, TlsFiles};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const FAKE_SSH: &str = r#"#!/bin/sh
# TEST DOUBLE of OpenSSH: records its arguments, skips its options, runs the command here.
echo "$@" >> "$(dirname "$0")/ssh.log"
while [ $# -gt 0 ]; do
  case "$1" in
    -o|-p|-l|-J|-W) shift 2 ;;
    -A|-t) shift ;;
    *) break ;;
  esac
done
shift
exec sh -c "$*"
"#;

#[test]
fn the_client_speaks_http_through_a_spawned_fd_forward() {
    let dir = Dir::new("tunnel-lib");
    let sock = dir.path("flt.sock");
    let api = ApiDouble::start_unix(Path::new(&sock));
    api.machine(M1, "172.17.8.103", &[]);
    let argv = vec![
        env!("CARGO_BIN_EXE_fltctl").to_string(),
        "fd-forward".to_string(),
        sock.clone(),
    ];
    let client = HttpApi::new(
        &Endpoint::Unix(sock.clone().into()),
        &TlsFiles::default(),
        Some(argv),
    )
    .expect("client");
    for _ in 0..3 {
        let machines = client.machines().expect("machines");
        assert_eq!(machines.len(), 1);
    }
    assert_eq!(client.unit("nope.service").expect("get"), None);
    assert_eq!(api.requests("GET /flt/v1/machines").len(), 3);
}

#[test]
fn the_binary_tunnels_to_a_unix_endpoint_through_ssh() {
    let dir = Dir::new("tunnel-bin");
    let bin = dir.0.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let ssh = bin.join("ssh");
    std::fs::write(&ssh, FAKE_SSH).expect("write");
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_fltctl"), bin.join("fltctl")).expect("link");
    let sock = dir.path("flt.sock");
    let api = ApiDouble::start_unix(Path::new(&sock));
    api.machine(M1, "172.17.8.103", &[]);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_fltctl"))
        .env("PATH", path)
        .env("HOME", &dir.0)
        .args([
            &format!("--endpoint=unix://{sock}"),
            "--tunnel=bastion.example:2222",
            "list-machines",
            "--no-legend",
        ])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "113f16a7...\t172.17.8.103\t-\n"
    );
    let log = std::fs::read_to_string(bin.join("ssh.log")).expect("ssh log");
    assert!(
        log.contains(&format!(
            "-p 2222 -l core bastion.example fltctl fd-forward {sock}"
        )),
        "{log}"
    );
}
