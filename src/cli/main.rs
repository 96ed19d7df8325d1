//! The `sluice` command-line tool.

mod demo;
mod ops;

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
Usage: sluice [COMMAND]

Commands:
  demo                          Run the default policy against simulated, reproducible
                                traffic and print what each client got (the default)
  stat PATH [--json|--prometheus]
                                Occupancy, evictions, per-rule counts and locked keys of the
                                table file PATH
  migrate FROM TO [--policy FILE]
                                Build a new table at TO (for the policy in FILE) carrying
                                every key's state and lockout from the table FROM
  check PATH KEY CATEGORY [--json]
                                Check (and record) one request of KEY in CATEGORY
  peek PATH KEY CATEGORY [--json]
                                What a check would answer now, recording nothing
  unlock PATH KEY CATEGORY      Lift KEY's lockout in CATEGORY (and forget its failures)
  help [COMMAND]                Print this help, or a command's

Options:
  -h, --help       Print help (after a command: that command's help)
  -V, --version    Print the version

Exit status: 0 allowed / done; 1 refused (check, peek) or not locked (unlock); 2 usage error,
unknown category or a policy file that does not parse; 3 the table file cannot be opened (or
migrated); 4 unlock of a key the table holds nothing for.
";

const STAT_HELP: &str = "\
Usage: sluice stat PATH [--json|--prometheus]

Attach to the table file PATH (with the policy stored in it) and print its format version,
capacity, bytes per key, live keys, locked keys, installs in progress, evictions, reclaimed
slots, requests refused for want of a slot, whether a migration superseded it (and by
which table), and per rule: passed, limited, dry-run limited, locked, lockouts.
--json prints one JSON object instead; --prometheus the Prometheus text exposition format
(for node_exporter's textfile collector: `sluice stat PATH --prometheus > DIR/sluice.prom`).
Attaches read-only: read permission on PATH is enough, and nothing is changed.

Exit status: 0 printed; 2 usage error; 3 PATH is not a table that can be opened.
";

const MIGRATE_HELP: &str = "\
Usage: sluice migrate FROM TO [--policy FILE]

Build a new table file TO for the policy in FILE (FROM's own policy without --policy) and
carry every live key of the table FROM into it: every active lockout with its end and
escalation level, the logs of unchanged rules whole, of changed rules what is still exact;
new rules start empty. TO appears complete (built beside it, then linked), keeps FROM's
hash secret and mode, and FROM is then marked superseded (`sluice stat FROM` names TO).
TO the same file as FROM migrates in place: the new table replaces FROM at its path.
Prints what was carried. Needs read and write permission on FROM.

Errors (nothing created, FROM unchanged): TO exists, FROM is not a table (or was superseded
already), FILE does not parse (line and column), a capacity change for a table below 16384
keys, a locked key without a free slot in the new table.

Exit status: 0 migrated; 2 usage error or FILE cannot be read or parsed; 3 FROM cannot be
opened or the migration cannot be made.
";

const CHECK_HELP: &str = "\
Usage: sluice check PATH KEY CATEGORY [--json]

Check one request of KEY in CATEGORY against the table file PATH at the current time,
recording it if allowed, exactly as a server sharing the table would. Prints the decision
(--json: as a JSON object). Needs read and write permission on PATH.

Exit status: 0 allowed; 1 refused (limited, locked, or full); 2 usage error or unknown
category; 3 PATH is not a table that can be opened.
";

const PEEK_HELP: &str = "\
Usage: sluice peek PATH KEY CATEGORY [--json]

What `sluice check` would answer for KEY in CATEGORY now, recording nothing. Attaches
read-only: read permission on PATH is enough.

Exit status: 0 would be allowed; 1 would be refused; 2 usage error or unknown category;
3 PATH is not a table that can be opened.
";

const UNLOCK_HELP: &str = "\
Usage: sluice unlock PATH KEY CATEGORY

Lift KEY's lockout in CATEGORY of the table file PATH: the lock, its escalation level and
the failures counted so far are forgotten. Rate limits are untouched. Needs read and write
permission on PATH.

Exit status: 0 unlocked; 1 KEY was not locked (its failure count was cleared); 2 usage
error, unknown category, or a category without a lockout; 3 PATH is not a table that can be
opened; 4 the table holds nothing for KEY (nothing changed).
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Demo,
    Help(&'static str),
    Version,
    Stat {
        path: PathBuf,
        format: ops::StatFormat,
    },
    Migrate {
        from: PathBuf,
        to: PathBuf,
        policy: Option<PathBuf>,
    },
    Decide {
        path: PathBuf,
        key: Vec<u8>,
        category: String,
        record: bool,
        json: bool,
    },
    Unlock {
        path: PathBuf,
        key: Vec<u8>,
        category: String,
    },
}

/// A command line that does not parse: the message and the help to print after it.
#[derive(Debug, PartialEq, Eq)]
struct UsageError(String, &'static str);

fn help_of(command: &str) -> Option<&'static str> {
    Some(match command {
        "demo" | "help" => USAGE,
        "stat" => STAT_HELP,
        "migrate" => MIGRATE_HELP,
        "check" => CHECK_HELP,
        "peek" => PEEK_HELP,
        "unlock" => UNLOCK_HELP,
        _ => return None,
    })
}

/// Parse the arguments after the program name.
fn parse_args(args: &[OsString]) -> Result<Command, UsageError> {
    let Some((first, rest)) = args.split_first() else {
        return Ok(Command::Demo);
    };
    let Some(first) = first.to_str() else {
        return Err(UsageError(
            format!("unknown command {:?}", first.to_string_lossy()),
            USAGE,
        ));
    };
    let help = match first {
        "-h" | "--help" => return Ok(Command::Help(USAGE)),
        "-V" | "--version" => return Ok(Command::Version),
        "help" => {
            return match rest.first().map(|a| a.to_string_lossy()) {
                None => Ok(Command::Help(USAGE)),
                Some(c) => help_of(&c)
                    .map(Command::Help)
                    .ok_or_else(|| UsageError(format!("no help for unknown command {c:?}"), USAGE)),
            }
        }
        other if other.starts_with('-') => {
            return Err(UsageError(format!("unknown option {other:?}"), USAGE))
        }
        other => {
            help_of(other).ok_or_else(|| UsageError(format!("unknown command {other:?}"), USAGE))?
        }
    };
    // Flags may come anywhere after the command; everything else is positional.
    let mut json = false;
    let mut prometheus = false;
    let mut policy: Option<PathBuf> = None;
    let mut positional: Vec<&OsString> = Vec::new();
    let mut args = rest.iter();
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("-h" | "--help") => return Ok(Command::Help(help)),
            Some("--json") if matches!(first, "stat" | "check" | "peek") => json = true,
            Some("--prometheus") if first == "stat" => prometheus = true,
            Some("--policy") if first == "migrate" => match args.next() {
                Some(file) if policy.is_none() => policy = Some(PathBuf::from(file)),
                Some(_) => return Err(UsageError("--policy given twice".into(), help)),
                None => return Err(UsageError("--policy needs a FILE".into(), help)),
            },
            Some("--") => {}
            Some(o) if o.starts_with("--") => {
                return Err(UsageError(
                    format!("unknown option {o:?} for {first:?}"),
                    help,
                ))
            }
            _ => positional.push(a),
        }
    }
    if json && prometheus {
        return Err(UsageError(
            "--json and --prometheus are two output formats: give one".into(),
            help,
        ));
    }
    let want = match first {
        "demo" => 0,
        "stat" => 1,
        "migrate" => 2,
        _ => 3,
    };
    if positional.len() != want {
        let names = match first {
            "demo" => "no arguments",
            "stat" => "PATH",
            "migrate" => "FROM TO",
            _ => "PATH KEY CATEGORY",
        };
        return Err(UsageError(
            format!(
                "{first:?} takes {names}; got {} argument{}",
                positional.len(),
                if positional.len() == 1 { "" } else { "s" }
            ),
            help,
        ));
    }
    let path = || PathBuf::from(positional[0]);
    let key = || positional[1].as_bytes().to_vec();
    let category = || -> Result<String, UsageError> {
        positional[2]
            .to_str()
            .map(str::to_owned)
            .ok_or_else(|| UsageError("CATEGORY is not valid UTF-8".into(), help))
    };
    Ok(match first {
        "demo" => Command::Demo,
        "stat" => Command::Stat {
            path: path(),
            format: if json {
                ops::StatFormat::Json
            } else if prometheus {
                ops::StatFormat::Prometheus
            } else {
                ops::StatFormat::Text
            },
        },
        "migrate" => Command::Migrate {
            from: path(),
            to: PathBuf::from(positional[1]),
            policy,
        },
        "check" | "peek" => Command::Decide {
            path: path(),
            key: key(),
            category: category()?,
            record: first == "check",
            json,
        },
        _ => Command::Unlock {
            path: path(),
            key: key(),
            category: category()?,
        },
    })
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

/// Run an operator command, printing its failure to stderr.
fn run_op(op: impl FnOnce(&mut dyn Write) -> Result<u8, ops::Failure>) -> ExitCode {
    let mut out = io::stdout().lock();
    let result = op(&mut out);
    let _ = out.flush();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(ops::Failure(message, code)) => {
            eprintln!("sluice: {message}");
            ExitCode::from(code)
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
        Ok(Command::Help(text)) => print(|out| out.write_all(text.as_bytes())),
        Ok(Command::Version) => print(|out| writeln!(out, "sluice {}", env!("CARGO_PKG_VERSION"))),
        Ok(Command::Stat { path, format }) => run_op(|out| ops::stat(&path, format, out)),
        Ok(Command::Migrate { from, to, policy }) => {
            run_op(|out| ops::migrate(&from, &to, policy.as_deref(), out))
        }
        Ok(Command::Decide {
            path,
            key,
            category,
            record,
            json,
        }) => run_op(|out| ops::decide(&path, &key, &category, record, json, out)),
        Ok(Command::Unlock {
            path,
            key,
            category,
        }) => run_op(|out| ops::unlock(&path, &key, &category, out)),
        Err(UsageError(message, help)) => {
            eprint!("sluice: {message}\n\n{help}");
            ExitCode::from(ops::EXIT_USAGE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, UsageError> {
        let _ = ops::EXIT_OK;
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
            assert_eq!(parse(&[a]), Ok(Command::Help(USAGE)));
        }
        assert_eq!(parse(&["demo", "--help"]), Ok(Command::Help(USAGE)));
        assert_eq!(parse(&["stat", "--help"]), Ok(Command::Help(STAT_HELP)));
        assert_eq!(
            parse(&["unlock", "p", "-h"]),
            Ok(Command::Help(UNLOCK_HELP))
        );
        assert_eq!(parse(&["help", "check"]), Ok(Command::Help(CHECK_HELP)));
        assert_eq!(parse(&["peek", "--help"]), Ok(Command::Help(PEEK_HELP)));
        assert_eq!(parse(&["--version"]), Ok(Command::Version));
        assert_eq!(parse(&["-V"]), Ok(Command::Version));
    }

    #[test]
    fn unknown_commands_and_arguments_are_named() {
        let Err(UsageError(m, _)) = parse(&["frobnicate"]) else {
            panic!("accepted an unknown command");
        };
        assert!(m.contains("\"frobnicate\""), "{m}");
        let Err(UsageError(m, _)) = parse(&["--frob"]) else {
            panic!("accepted an unknown option");
        };
        assert!(m.contains("\"--frob\""), "{m}");
        let Err(UsageError(m, _)) = parse(&["demo", "extra"]) else {
            panic!("accepted an extra argument");
        };
        assert!(m.contains("no arguments"), "{m}");
    }

    #[test]
    fn operator_commands_take_their_arguments() {
        assert_eq!(
            parse(&["stat", "/dev/shm/t", "--json"]),
            Ok(Command::Stat {
                path: "/dev/shm/t".into(),
                format: ops::StatFormat::Json
            })
        );
        assert_eq!(
            parse(&["stat", "t", "--prometheus"]),
            Ok(Command::Stat {
                path: "t".into(),
                format: ops::StatFormat::Prometheus
            })
        );
        assert!(parse(&["stat", "t", "--prometheus", "--json"]).is_err());
        assert_eq!(
            parse(&["migrate", "a", "b", "--policy", "p.policy"]),
            Ok(Command::Migrate {
                from: "a".into(),
                to: "b".into(),
                policy: Some("p.policy".into())
            })
        );
        assert_eq!(
            parse(&["migrate", "a", "a"]),
            Ok(Command::Migrate {
                from: "a".into(),
                to: "a".into(),
                policy: None
            })
        );
        let Err(UsageError(m, help)) = parse(&["migrate", "a", "--policy"]) else {
            panic!("accepted --policy without a file");
        };
        assert!(m.contains("FILE"), "{m}");
        assert_eq!(help, MIGRATE_HELP);
        let Err(UsageError(m, _)) = parse(&["migrate", "a"]) else {
            panic!("accepted a missing TO");
        };
        assert!(m.contains("FROM TO"), "{m}");
        assert_eq!(
            parse(&["check", "t", "198.51.100.7", "auth"]),
            Ok(Command::Decide {
                path: "t".into(),
                key: b"198.51.100.7".to_vec(),
                category: "auth".into(),
                record: true,
                json: false
            })
        );
        assert!(matches!(
            parse(&["peek", "t", "k", "auth", "--json"]),
            Ok(Command::Decide {
                record: false,
                json: true,
                ..
            })
        ));
        assert!(matches!(
            parse(&["unlock", "t", "k", "auth"]),
            Ok(Command::Unlock { .. })
        ));
        let Err(UsageError(m, help)) = parse(&["unlock", "t", "k"]) else {
            panic!("accepted a missing category");
        };
        assert!(
            m.contains("PATH KEY CATEGORY") && m.contains("got 2"),
            "{m}"
        );
        assert_eq!(help, UNLOCK_HELP);
        let Err(UsageError(m, _)) = parse(&["unlock", "t", "k", "auth", "--json"]) else {
            panic!("accepted --json for unlock");
        };
        assert!(m.contains("--json"), "{m}");
    }
}
