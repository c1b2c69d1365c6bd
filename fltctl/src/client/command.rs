//! HTTP through a child process's stdin and stdout, for `--tunnel`: fltctl runs
//! `ssh <bastion> fltctl fd-forward <socket>` (a unix endpoint) or `ssh -W host:port <bastion>`
//! (a TCP endpoint) and speaks HTTP over the pipe, as fleetctl did over its SSH session.

use std::fmt;
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, Transport,
};

/// Spawns `argv` for every new connection.
#[derive(Debug)]
pub struct CommandConnector {
    pub argv: Vec<String>,
}

impl<In: Transport> Connector<In> for CommandConnector {
    type Out = CommandTransport;

    fn connect(
        &self,
        details: &ConnectionDetails<'_>,
        _chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err(ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "empty tunnel command",
            )));
        };
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                ureq::Error::Io(std::io::Error::new(e.kind(), format!("{program}: {e}")))
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(ureq::Error::Io(std::io::Error::other(
                "tunnel has no stdio",
            )));
        };
        let config = details.config;
        Ok(Some(CommandTransport {
            child,
            stdin,
            stdout,
            buffers: LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size()),
        }))
    }
}

/// One spawned tunnel; killed when the connection is dropped.
pub struct CommandTransport {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    buffers: LazyBuffers,
}

impl fmt::Debug for CommandTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandTransport")
            .field("pid", &self.child.id())
            .finish()
    }
}

impl Drop for CommandTransport {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Transport for CommandTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, _timeout: NextTimeout) -> Result<(), ureq::Error> {
        let output = &self.buffers.output()[..amount];
        self.stdin.write_all(output)?;
        self.stdin.flush()?;
        Ok(())
    }

    fn await_input(&mut self, _timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let input = self.buffers.input_append_buf();
        let amount = loop {
            match self.stdout.read(input) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    // A tunnel whose process has exited cannot carry another request.
    fn is_open(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}
