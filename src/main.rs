//! The `bizzy` command: nginx's command line (`-c`, `-p`, `-t`, `-T`, `-q`, `-s`, `-V`), and the
//! subcommands named by the first argument (`migrate`, `decode`, `sim`, `token`), each a library function.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bizzy::core::config::Conf;
use bizzy::core::process::{master, title, App, AppError};
use bizzy::modules::auth::mint;
use bizzy::modules::database::{migrate, DatabaseConf};
use bizzy::modules::ingest::{decode, sim};
use bizzy::server::Bizzy;

const USAGE: &str = "\
Usage: bizzy [-c FILE] [-p PREFIX] [-t | -T] [-q] [-s stop|quit|reload|reopen] [-V] [-h]
       bizzy migrate [-c FILE] [-p PREFIX]
       bizzy decode TOPIC HEX
       bizzy sim [-c FILE] [-p PREFIX] [--sensors N] [--duration S] [--rate R] [options]
       bizzy token --key FILE --kid KID --project P --uid UID [--ttl 1h] [--iat-offset [-]D]

Commands:
  migrate    apply the pending database migrations to database.url, print them, and exit
  decode     decode a sensor payload, print it as JSON
  sim        simulated sensors over real MQTT, and the occupancy they must leave (bizzy sim -h)
  token      print a Firebase-shaped ID token signed with a local RSA key (demos and tests)

Options:
  -c FILE    configuration file (default: conf/bizzy.toml, relative to the prefix)
  -p PREFIX  prefix that relative paths are resolved against (default: the current directory)
  -t         test the configuration and exit
  -T         test the configuration, print it with every default filled in, and exit
  -q         with -t: print nothing unless there is an error
  -s SIGNAL  send SIGNAL to the master process: stop, quit, reload, reopen
  -V         print the version and exit
  -h         print this help and exit
";

#[derive(Debug, Default)]
struct Opts {
    conf: Option<PathBuf>,
    prefix: Option<PathBuf>,
    test: bool,
    dump: bool,
    quiet: bool,
    signal: Option<String>,
    version: bool,
    help: bool,
}

/// A command line that cannot be followed.
#[derive(Debug)]
enum ArgError {
    NotUtf8,
    NeedsValue(&'static str),
    Invalid(String),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::NotUtf8 => f.write_str("arguments must be UTF-8"),
            ArgError::NeedsValue(name) => write!(f, "option \"{name}\" requires a value"),
            ArgError::Invalid(option) => write!(f, "invalid option: \"{option}\""),
        }
    }
}

fn parse_args(args: &[OsString]) -> Result<Opts, ArgError> {
    let mut o = Opts::default();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_str().ok_or(ArgError::NotUtf8)?;
        let mut value = |name: &'static str| -> Result<String, ArgError> {
            it.next()
                .and_then(|v| v.to_str())
                .map(str::to_string)
                .ok_or(ArgError::NeedsValue(name))
        };
        match a {
            "-c" => o.conf = Some(PathBuf::from(value("-c")?)),
            "-p" => o.prefix = Some(PathBuf::from(value("-p")?)),
            "-s" => o.signal = Some(value("-s")?),
            "-t" => o.test = true,
            "-T" => {
                o.test = true;
                o.dump = true;
            }
            "-q" => o.quiet = true,
            "-V" | "-v" => o.version = true,
            "-h" | "-?" | "--help" => o.help = true,
            other => return Err(ArgError::Invalid(other.to_string())),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    match args.get(1).and_then(|a| a.to_str()) {
        Some("migrate") => run_migrate(&args[1..]),
        Some("decode") => decode::cli::run(&args[2..]),
        Some("sim") => run_sim(&args[2..]),
        Some("token") => mint::cli::run(&args[2..]),
        _ => serve(args),
    }
}

/// The options, or how the command ends here: a usage error (exit 2) or `-h` (exit 0).
fn options(parsed: Result<Opts, ArgError>) -> Result<Opts, ExitCode> {
    match parsed {
        Err(e) => {
            eprintln!("bizzy: {e}\n\n{USAGE}");
            Err(ExitCode::from(2))
        }
        Ok(o) if o.help => {
            print!("{USAGE}");
            Err(ExitCode::SUCCESS)
        }
        Ok(o) => Ok(o),
    }
}

/// The server's own command line: run, test the configuration, or signal the master.
fn serve(args: Vec<OsString>) -> ExitCode {
    let opts = match options(parse_args(&args)) {
        Ok(o) => o,
        Err(code) => return code,
    };
    if opts.version {
        eprintln!("bizzy version: bizzy/{}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let (file, prefix) = conf_paths(&opts);
    let app = Bizzy::default();
    let conf = match Conf::load(&file, &prefix, app.sections())
        .map_err(AppError::from)
        .and_then(|c| app.check(&c).map(|()| c))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bizzy: [emerg] {e}");
            if opts.test {
                eprintln!("bizzy: configuration file {} test failed", file.display());
            }
            return ExitCode::FAILURE;
        }
    };
    if opts.test {
        if !opts.quiet {
            eprintln!(
                "bizzy: the configuration file {} syntax is ok",
                file.display()
            );
            eprintln!(
                "bizzy: configuration file {} test is successful",
                file.display()
            );
        }
        if opts.dump {
            println!("# configuration file {}:\n{}", file.display(), conf.dump());
        }
        return ExitCode::SUCCESS;
    }
    if let Some(sig) = &opts.signal {
        return match master::signal_master(&conf.main.pid, sig) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bizzy: [error] {e}");
                ExitCode::FAILURE
            }
        };
    }
    let start = master::Start {
        conf_file: file,
        prefix,
        exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from(&args[0])),
        args,
    };
    title::init();
    match master::run(&app, start, conf) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bizzy: [emerg] {e}");
            ExitCode::FAILURE
        }
    }
}

/// `bizzy migrate [-c FILE] [-p PREFIX]`: `args` from "migrate" on.
fn run_migrate(args: &[OsString]) -> ExitCode {
    let opts = match options(parse_args(args)) {
        Ok(o) if o.test || o.quiet || o.signal.is_some() || o.version => {
            eprintln!("bizzy: migrate takes only -c and -p\n\n{USAGE}");
            return ExitCode::from(2);
        }
        Ok(o) => o,
        Err(code) => return code,
    };
    let (file, prefix) = conf_paths(&opts);
    let conf = match Conf::load(&file, &prefix, Bizzy::default().sections()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bizzy: [emerg] {e}");
            return ExitCode::FAILURE;
        }
    };
    match migrate::migrate(conf.section::<DatabaseConf>()) {
        Ok(report) => {
            for (_, name) in &report.applied {
                println!("bizzy: applied migration {name}");
            }
            let state = if report.applied.is_empty() {
                "current"
            } else {
                "now"
            };
            println!(
                "bizzy: the database schema is {state} at version {}",
                report.version
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bizzy: [emerg] migrate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `bizzy sim ...`: `args` after "sim".
fn run_sim(args: &[OsString]) -> ExitCode {
    let parsed = match sim::cli::parse(args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let opts = Opts {
        conf: parsed.conf,
        prefix: parsed.prefix,
        ..Opts::default()
    };
    let (file, prefix) = conf_paths(&opts);
    match Conf::load(&file, &prefix, Bizzy::default().sections()) {
        Ok(conf) => sim::cli::run(&parsed.options, &conf),
        Err(e) => {
            eprintln!("bizzy: [emerg] {e}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration file and the prefix the options name, both absolute.
fn conf_paths(opts: &Opts) -> (PathBuf, PathBuf) {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let prefix = absolute(&cwd, opts.prefix.as_deref().unwrap_or(Path::new(".")));
    let file = absolute(
        &prefix,
        opts.conf.as_deref().unwrap_or(Path::new("conf/bizzy.toml")),
    );
    (file, prefix)
}

/// `p` against `base`, without "." components.
fn absolute(base: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    joined
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        std::iter::once("bizzy")
            .chain(v.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn options_parse() {
        let o = parse_args(&args(&["-c", "x.toml", "-p", "/srv", "-T", "-q"])).unwrap();
        assert_eq!(o.conf.as_deref(), Some(Path::new("x.toml")));
        assert!(o.test && o.dump && o.quiet);
        assert!(parse_args(&args(&["-c"])).is_err());
        assert!(parse_args(&args(&["-x"])).is_err());
    }
}
