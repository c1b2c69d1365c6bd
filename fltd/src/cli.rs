//! fltd's command line (spec §8): Go `flag` rules, so `-config x`, `--config x`,
//! `-config=x`; `-version`, `--version` or the lone positional `version`; any other
//! positional is refused. Options are not flags: they come from the file and `FLT_*`.
//!
//! Branch `api` has the same parser in `config.rs` (`config::parse_args`); on merge, keep one.

use std::fmt;
use std::path::PathBuf;

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// Run the daemon with this config file (`None`: the default file if it exists).
    Run { config_file: Option<PathBuf> },
    /// Print `fltd version <v>` and exit 0.
    Version,
    /// Print the usage and exit 0.
    Help,
}

/// A command line fltd refuses (it prints the message and the usage).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgsError {
    /// A flag other than -config, -version, -help (Go's flag package exits 2).
    UnknownFlag(String),
    /// `-config` without a value.
    MissingValue(String),
    /// A positional argument other than a lone `version` (exit 1).
    Positional { argv0: String },
}

impl ArgsError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ArgsError::Positional { .. } => 1,
            _ => 2,
        }
    }
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::UnknownFlag(flag) => write!(f, "flag provided but not defined: -{flag}"),
            ArgsError::MissingValue(flag) => write!(f, "flag needs an argument: -{flag}"),
            ArgsError::Positional { argv0 } => write!(
                f,
                "{argv0} takes no arguments. Did you mean to invoke fltctl instead?"
            ),
        }
    }
}

pub const USAGE: &str = "Usage of fltd:\n  -config string\n    \tPath to config file. \
fltd will look for a config at /etc/flt/flt.conf by default.\n  -version\n    \tPrint the \
version and exit\n";

/// Parses the arguments after `argv[0]`.
pub fn parse_args(argv0: &str, args: &[String]) -> Result<Invocation, ArgsError> {
    let mut config_file = None;
    let mut version = false;
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        if arg == "--" {
            i += 1;
            break;
        }
        let Some(flag) = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|f| !f.is_empty())
        else {
            break;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (flag, None),
        };
        match name {
            "config" => {
                let value = match inline {
                    Some(value) => value,
                    None => {
                        i += 1;
                        args.get(i)
                            .cloned()
                            .ok_or_else(|| ArgsError::MissingValue(name.to_string()))?
                    }
                };
                config_file = Some(PathBuf::from(value));
            }
            "version" => version = inline.is_none_or(|v| v == "true" || v == "1"),
            "h" | "help" => return Ok(Invocation::Help),
            _ => return Err(ArgsError::UnknownFlag(name.to_string())),
        }
        i += 1;
    }
    let positional = &args[i.min(args.len())..];
    if version || positional == ["version"] {
        return Ok(Invocation::Version);
    }
    if !positional.is_empty() {
        return Err(ArgsError::Positional {
            argv0: argv0.to_string(),
        });
    }
    Ok(Invocation::Run { config_file })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Invocation, ArgsError> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        parse_args("fltd", &args)
    }

    #[test]
    fn config_version_and_positionals() {
        let run = |p: &str| {
            Ok(Invocation::Run {
                config_file: Some(PathBuf::from(p)),
            })
        };
        assert_eq!(parse(&["-config", "/a"]), run("/a"));
        assert_eq!(parse(&["--config", "/b"]), run("/b"));
        assert_eq!(parse(&["-config=/c"]), run("/c"));
        assert_eq!(parse(&[]), Ok(Invocation::Run { config_file: None }));
        for v in [
            &["-version"][..],
            &["--version"],
            &["version"],
            &["-config", "/a", "version"],
        ] {
            assert_eq!(parse(v), Ok(Invocation::Version), "{v:?}");
        }
        let err = parse(&["start"]).expect_err("positional");
        assert_eq!(
            err.to_string(),
            "fltd takes no arguments. Did you mean to invoke fltctl instead?"
        );
        assert_eq!(err.exit_code(), 1);
        assert_eq!(
            parse(&["-config"]),
            Err(ArgsError::MissingValue("config".into()))
        );
        assert_eq!(parse(&["-x"]).map_err(|e| e.exit_code()), Err(2));
        assert_eq!(parse(&["-h"]), Ok(Invocation::Help));
    }
}
