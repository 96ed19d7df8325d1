//! The `sluice` command-line tool.

mod demo;

use std::ffi::OsString;
use std::io::{self, Write};
use std::process::ExitCode;

const USAGE: &str = "\
Usage: sluice [COMMAND]

Commands:
  demo     Run the default policy against simulated, reproducible traffic and print what
           each client got (the default when no command is given)
  help     Print this help

Options:
  -h, --help       Print this help
  -V, --version    Print the version
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Demo,
    Help,
    Version,
}

/// A command line that does not parse: the message to print before the usage.
#[derive(Debug, PartialEq, Eq)]
struct UsageError(String);

/// Parse the arguments after the program name.
fn parse_args(args: &[OsString]) -> Result<Command, UsageError> {
    let Some((first, rest)) = args.split_first() else {
        return Ok(Command::Demo);
    };
    let Some(first) = first.to_str() else {
        return Err(UsageError(format!(
            "unknown command {:?}",
            first.to_string_lossy()
        )));
    };
    let command = match first {
        "demo" => Command::Demo,
        "help" | "-h" | "--help" => Command::Help,
        "-V" | "--version" => Command::Version,
        other if other.starts_with('-') => {
            return Err(UsageError(format!("unknown option {other:?}")))
        }
        other => return Err(UsageError(format!("unknown command {other:?}"))),
    };
    // None of the commands takes arguments (yet); `sluice demo --help` is still help.
    match rest.first().map(|a| a.to_string_lossy()) {
        None => Ok(command),
        Some(a) if a == "-h" || a == "--help" => Ok(Command::Help),
        Some(a) => Err(UsageError(format!(
            "unexpected argument {a:?} after {first:?}"
        ))),
    }
}

/// Write to stdout; a closed pipe (`sluice demo | head`) is not an error.
fn print(write: impl FnOnce(&mut io::StdoutLock<'_>) -> io::Result<()>) -> ExitCode {
    let mut out = io::stdout().lock();
    match write(&mut out).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match parse_args(&args) {
        Ok(Command::Demo) => print(|out| {
            let mut buffered = io::BufWriter::new(out);
            demo::run(&mut buffered)?;
            buffered.flush()
        }),
        Ok(Command::Help) => print(|out| out.write_all(USAGE.as_bytes())),
        Ok(Command::Version) => print(|out| writeln!(out, "sluice {}", env!("CARGO_PKG_VERSION"))),
        Err(UsageError(message)) => {
            eprint!("sluice: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, UsageError> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        parse_args(&args)
    }

    #[test]
    fn demo_is_the_default() {
        assert_eq!(parse(&[]), Ok(Command::Demo));
        assert_eq!(parse(&["demo"]), Ok(Command::Demo));
    }

    #[test]
    fn help_and_version() {
        for a in ["help", "-h", "--help"] {
            assert_eq!(parse(&[a]), Ok(Command::Help));
        }
        assert_eq!(parse(&["demo", "--help"]), Ok(Command::Help));
        assert_eq!(parse(&["--version"]), Ok(Command::Version));
        assert_eq!(parse(&["-V"]), Ok(Command::Version));
    }

    #[test]
    fn unknown_commands_and_arguments_are_named() {
        let Err(UsageError(m)) = parse(&["frobnicate"]) else {
            panic!("accepted an unknown command");
        };
        assert!(m.contains("\"frobnicate\""), "{m}");
        let Err(UsageError(m)) = parse(&["--frob"]) else {
            panic!("accepted an unknown option");
        };
        assert!(m.contains("\"--frob\""), "{m}");
        let Err(UsageError(m)) = parse(&["demo", "extra"]) else {
            panic!("accepted an extra argument");
        };
        assert!(m.contains("\"extra\""), "{m}");
    }
}
