//! Running the external tools the harness drives (`nsenter`, `ip`, `nft`, `journalctl`, ...).

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::Error;

/// Renders a command line for error messages.
pub(crate) fn describe(program: &str, args: &[&str]) -> String {
    let mut line = program.to_string();
    for arg in args {
        line.push(' ');
        line.push_str(arg);
    }
    line
}

/// Every command the harness runs is bounded: a hung tool becomes an error naming it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `program args` to completion and returns its output, whatever its exit status.
/// Killed (and an error) after 60 s.
pub(crate) fn output(program: &str, args: &[&str], stdin: Option<&str>) -> Result<Output, Error> {
    let line = describe(program, args);
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("spawn `{line}`"), e))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|e| Error::io(format!("write stdin of `{line}`"), e))?;
    }
    // Readers on their own threads: a grandchild that keeps a pipe open must not block us.
    let stdout = child.stdout.take().map(read_all);
    let stderr = child.stderr.take().map(read_all);
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < COMMAND_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Timeout {
                    what: format!("`{line}` to exit (killed)"),
                    waited: started.elapsed(),
                    detail: String::new(),
                });
            }
            Err(e) => return Err(Error::io(format!("wait for `{line}`"), e)),
        }
    };
    let collect = |rx: Option<mpsc::Receiver<Vec<u8>>>| {
        rx.and_then(|rx| rx.recv_timeout(Duration::from_secs(2)).ok())
            .unwrap_or_default()
    };
    Ok(Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    })
}

fn read_all(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// Runs `program args`; a non-zero exit is an error that carries the command and its stderr.
pub(crate) fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, Error> {
    let out = output(program, args, stdin)?;
    check(&describe(program, args), out)
}

/// Turns an `Output` into its stdout, or an error naming `command` if it failed.
pub(crate) fn check(command: &str, out: Output) -> Result<String, Error> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            command: command.to_string(),
            status: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// True if `tool` is an executable on `PATH` (or an absolute path to one).
pub(crate) fn on_path(tool: &str) -> bool {
    if tool.starts_with('/') {
        return std::path::Path::new(tool).is_file();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}
