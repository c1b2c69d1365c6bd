//! `fltctl fd-forward SOCKET`: copy stdin to a Unix socket and the socket to stdout. fltctl runs
//! it on a bastion host (over ssh) to reach fltd's socket with `--tunnel`.

use crate::context::Ctx;
use clap::Args;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

/// Proxy stdin and stdout to a Unix socket (used by --tunnel with a unix:// endpoint).
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  ssh core@bastion fltctl fd-forward /var/run/flt.sock")]
pub struct FdForwardArgs {
    /// Path of the socket.
    #[arg(value_name = "SOCKET")]
    pub socket: Vec<String>,
}

pub fn run(ctx: &mut Ctx<'_>, args: &FdForwardArgs) -> u8 {
    let [path] = args.socket.as_slice() else {
        ctx.warn("Provide a single argument");
        return 1;
    };
    let stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) => {
            ctx.warn(format!("Unable to connect to {path}: {e}"));
            return 1;
        }
    };
    match forward(stream, std::io::stdin(), std::io::stdout()) {
        Ok(()) => 0,
        Err(e) => {
            ctx.warn(format!("Error forwarding {path}: {e}"));
            1
        }
    }
}

/// Copies `input` to the socket (then shuts down its write side) and the socket to `output`,
/// until the socket closes.
pub fn forward(
    stream: UnixStream,
    mut input: impl Read + Send + 'static,
    mut output: impl Write,
) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut input, &mut writer);
        let _ = writer.shutdown(std::net::Shutdown::Write);
    });
    let mut reader = stream;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return output.flush();
        }
        output.write_all(&buf[..n])?;
        output.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_both_ways() {
        let dir = std::env::temp_dir().join(format!("fltctl-fdfwd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut got = String::new();
            conn.read_to_string(&mut got).unwrap();
            conn.write_all(format!("echo:{got}").as_bytes()).unwrap();
        });
        let mut out = Vec::new();
        let stream = UnixStream::connect(&path).unwrap();
        forward(stream, std::io::Cursor::new(b"ping".to_vec()), &mut out).unwrap();
        server.join().unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "echo:ping");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
