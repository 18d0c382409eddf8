//! `bizzy token --key FILE --kid KID --project P --uid UID [--ttl 1h] [--iat-offset D]`: prints a
//! Firebase-shaped ID token on standard output (exit 0), for demos and tests; an unreadable or
//! wrong key file is said on standard error (exit 1); a wrong command line prints the usage
//! (exit 2, as the server's options). `--iat-offset` moves the issue time, e.g. `-2h` for a token
//! already expired, `5m` for one issued in the future.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Claims, Minter};
use crate::core::config::Dur;

/// The usage lines, as `bizzy -h` lists them.
pub const USAGE: &str =
    "bizzy token --key FILE --kid KID --project P --uid UID [--ttl 1h] [--iat-offset [-]D]";

/// The options of `bizzy token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub key: PathBuf,
    pub kid: String,
    pub project: String,
    pub uid: String,
    /// From `iat` to `exp`.
    pub ttl: Duration,
    /// Added to the current time to make `iat`; negative for a token issued in the past.
    pub iat_offset: i64,
}

/// A command line `bizzy token` cannot follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageError {
    /// An option it does not know, or a non-UTF-8 argument.
    Invalid(String),
    /// An option given without its value.
    NeedsValue(String),
    /// A required option left out.
    Missing(&'static str),
    /// A value that is not what the option takes.
    BadValue(&'static str, String),
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::Invalid(a) => write!(f, "invalid option: \"{a}\""),
            UsageError::NeedsValue(o) => write!(f, "option \"{o}\" requires a value"),
            UsageError::Missing(o) => write!(f, "option \"{o}\" is required"),
            UsageError::BadValue(o, why) => write!(f, "{o}: {why}"),
        }
    }
}

impl std::error::Error for UsageError {}

/// Runs `bizzy token` with the arguments after `token`.
pub fn run(args: &[OsString]) -> ExitCode {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("usage: {USAGE}");
        return ExitCode::SUCCESS;
    }
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bizzy: {e}\nusage: {USAGE}");
            return ExitCode::from(2);
        }
    };
    match Minter::load(&o.key, &o.kid) {
        Ok(m) => {
            let (iat, exp) = times(SystemTime::now(), o.iat_offset, o.ttl);
            let claims = Claims {
                project: &o.project,
                uid: &o.uid,
                iat,
                exp,
            };
            println!("{}", m.mint(&claims));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bizzy: token: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `iat` (now moved by `offset` seconds, not before the epoch) and `exp`, in Unix seconds.
fn times(now: SystemTime, offset: i64, ttl: Duration) -> (u64, u64) {
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let iat = now.saturating_add_signed(offset);
    (iat, iat.saturating_add(ttl.as_secs()))
}

/// The options, or why the command line is wrong.
pub fn parse(args: &[OsString]) -> Result<Options, UsageError> {
    let (mut key, mut kid, mut project, mut uid) = (None, None, None, None);
    let mut ttl = Duration::from_secs(3600);
    let mut iat_offset = 0;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a
            .to_str()
            .ok_or_else(|| UsageError::Invalid(a.to_string_lossy().into_owned()))?;
        let value = it
            .next()
            .and_then(|v| v.to_str())
            .map(str::to_string)
            .ok_or_else(|| UsageError::NeedsValue(a.to_string()));
        match a {
            "--key" => key = Some(PathBuf::from(value?)),
            "--kid" => kid = Some(value?),
            "--project" => project = Some(value?),
            "--uid" => uid = Some(value?),
            "--ttl" => ttl = duration("--ttl", &value?)?,
            "--iat-offset" => iat_offset = offset(&value?)?,
            other => return Err(UsageError::Invalid(other.to_string())),
        }
    }
    Ok(Options {
        key: key.ok_or(UsageError::Missing("--key"))?,
        kid: non_empty("--kid", kid)?,
        project: non_empty("--project", project)?,
        uid: non_empty("--uid", uid)?,
        ttl,
        iat_offset,
    })
}

fn non_empty(option: &'static str, v: Option<String>) -> Result<String, UsageError> {
    match v {
        None => Err(UsageError::Missing(option)),
        Some(v) if v.is_empty() => Err(UsageError::BadValue(option, "must not be empty".into())),
        Some(v) => Ok(v),
    }
}

fn duration(option: &'static str, text: &str) -> Result<Duration, UsageError> {
    text.parse::<Dur>()
        .map(|d| d.0)
        .map_err(|e| UsageError::BadValue(option, e.to_string()))
}

/// `"-2h"`, `"5m"` or `"0s"` as signed seconds.
fn offset(text: &str) -> Result<i64, UsageError> {
    let (sign, rest) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text),
    };
    let secs = duration("--iat-offset", rest)?.as_secs();
    i64::try_from(secs)
        .map(|s| sign * s)
        .map_err(|_| UsageError::BadValue("--iat-offset", format!("{text:?} is too large")))
}
