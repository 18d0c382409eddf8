//! Configuration: `[main]`, the sections the other parts register, typed durations and sizes,
//! validation with `file:line: key: message` errors, and the effective configuration printed by
//! `bizzy -T`.
//!
//! The master calls [`Conf::load`] at start and on every reload (HUP) with the [`Sections`] the
//! wiring registered; a failed load leaves the running configuration alone. Loading has three
//! steps: serde (unknown keys, unknown sections and wrong types are errors), one `validate()` per
//! section (ranges and cross-references) and the check that no address is claimed by two
//! sections, then relative paths are resolved against the prefix. Core reads `[main]` only and
//! hands every other table to the part that declared it (see [`section`]). This module reads the
//! one file and nothing else, never clamps a value silently and never panics on any input.

mod error;
mod main_conf;
pub mod section;
mod units;

#[cfg(test)]
mod tests;

use std::fs;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::ValueDeserializer;

pub use error::{
    at_least, between, check_no_repeats, fail, field_error, non_empty, ConfError, Invalid, KeyPath,
};
pub use main_conf::{auto_worker_processes, LogLevel, MainConf};
pub use section::{AnySection, Listener, Protocol, Section, SectionKind, Sections};
pub use units::{listen_list, parse_listen, Dur, Rate, Size, UnitError};

use error::Source;

/// A loaded, validated configuration with every path absolute.
#[derive(Debug, Clone)]
pub struct Conf {
    /// Absolute path of the file that was read.
    pub file: PathBuf,
    /// Absolute prefix; relative paths in the file were resolved against it.
    pub prefix: PathBuf,
    pub main: MainConf,
    /// Every registered section, in registration order, defaults filled in.
    sections: Vec<Box<dyn AnySection>>,
    /// The names of the sections the file wrote (a section left out runs on its defaults, and
    /// a module may stay off without it, as the database does).
    written: Vec<&'static str>,
}

/// Two configurations are equal when every value is: whether the file wrote a section or left
/// it to its defaults is not compared (the effective configuration `bizzy -T` prints writes
/// them all).
impl PartialEq for Conf {
    fn eq(&self, other: &Conf) -> bool {
        self.file == other.file
            && self.prefix == other.prefix
            && self.main == other.main
            && self.sections == other.sections
    }
}

/// A listening socket to open: its address, protocol and `listen(2)` backlog.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListenSpec {
    pub addr: SocketAddr,
    pub kind: Protocol,
    pub backlog: i32,
    /// A socket per worker with `SO_REUSEPORT` (nginx's `listen ... reuseport`): the kernel
    /// spreads connections across workers, and none shares an accept queue.
    pub reuseport: bool,
    /// `TCP_DEFER_ACCEPT` in seconds, 0 for none (nginx's `listen ... deferred`): a connection
    /// is accepted only once its first data is in, or after this long.
    pub deferred: u32,
}

/// A serde error before it is mapped to a line and key: its span and message.
struct Unread {
    span: Option<Range<usize>>,
    message: String,
}

impl From<toml::de::Error> for Unread {
    fn from(e: toml::de::Error) -> Unread {
        Unread {
            span: e.span(),
            message: e.message().to_string(),
        }
    }
}

/// The file as read: `[main]` and every registered section, each optional.
struct Document {
    main: MainConf,
    sections: Vec<Box<dyn AnySection>>,
    written: Vec<&'static str>,
}

impl Document {
    /// Reads each top-level table (in toml's order, by name) with the section registered under
    /// its name; a table the file leaves out takes its default.
    fn read(source: &Source<'_>, registered: &Sections) -> Result<Document, Unread> {
        let mut main = None;
        let mut found: Vec<Option<Box<dyn AnySection>>> =
            registered.kinds().iter().map(|_| None).collect();
        for (key, value) in source.table() {
            let name: &str = key.get_ref();
            let value = ValueDeserializer::from(value);
            if name == MainConf::NAME {
                main = Some(MainConf::deserialize(value)?);
            } else if let Some(i) = registered.find(name) {
                found[i] = Some(registered.kinds()[i].read(value)?);
            } else {
                let known: Vec<&str> = std::iter::once(MainConf::NAME)
                    .chain(registered.names())
                    .collect();
                return Err(Unread {
                    span: Some(key.span()),
                    message: section::unknown_field(name, &known),
                });
            }
        }
        let written = found
            .iter()
            .zip(registered.kinds())
            .filter(|(s, _)| s.is_some())
            .map(|(_, kind)| kind.name())
            .collect();
        let sections = found
            .into_iter()
            .zip(registered.kinds())
            .map(|(s, kind)| s.unwrap_or_else(|| kind.default_value()))
            .collect();
        Ok(Document {
            main: main.unwrap_or_default(),
            sections,
            written,
        })
    }

    /// One validation pass per section, then what spans sections.
    fn validate(&self) -> Result<(), Invalid> {
        Section::validate(&self.main)?;
        for s in &self.sections {
            s.validate()?;
        }
        let listeners: Vec<Vec<Listener>> = self.sections.iter().map(|s| s.listeners()).collect();
        check_shared_addresses(&listeners)
    }

    fn resolve(&mut self, prefix: &Path) {
        Section::resolve(&mut self.main, prefix);
        for s in &mut self.sections {
            s.resolve(prefix);
        }
    }
}

/// An address belongs to one section, nor may it be the wildcard of another section's address
/// of the same port (they would share one socket, see [`Conf::listeners`]); the error names the
/// later one. Within a section, addresses are its own `validate()`'s business.
fn check_shared_addresses(sections: &[Vec<Listener>]) -> Result<(), Invalid> {
    for (i, listeners) in sections.iter().enumerate() {
        for l in listeners {
            let clash = |a: &&Listener| {
                a.addr == l.addr || covers(a.addr, l.addr) || covers(l.addr, a.addr)
            };
            if let Some(first) = sections[..i].iter().flatten().find(clash) {
                let msg = format!(
                    "{} is already an {} address ({})",
                    l.addr, first.protocol.label, first.owner
                );
                return fail(&l.at, msg);
            }
        }
    }
    Ok(())
}

/// `path` resolved against `prefix` (an absolute path stays as it is).
pub fn resolve(prefix: &Path, path: &Path) -> PathBuf {
    prefix.join(path)
}

/// `path` made absolute against the current directory, without touching the file system.
fn absolute(path: &Path, file: &Path) -> Result<PathBuf, ConfError> {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    std::path::absolute(path).map_err(|e| ConfError::io(file, "cannot resolve paths", &e))
}

impl Conf {
    /// Reads, parses and validates `file` (relative to the current directory) with the
    /// `sections` the wiring registered; paths inside are resolved against `prefix`.
    pub fn load(file: &Path, prefix: &Path, sections: &Sections) -> Result<Conf, ConfError> {
        let text = fs::read_to_string(file).map_err(|e| ConfError::io(file, "cannot read", &e))?;
        Conf::parse(&text, file, prefix, sections)
    }

    /// Parses and validates `text`; `file` is only used in messages and for [`Conf::file`].
    pub fn parse(
        text: &str,
        file: &Path,
        prefix: &Path,
        sections: &Sections,
    ) -> Result<Conf, ConfError> {
        let source = Source::parse(text, file)?;
        let mut doc = Document::read(&source, sections)
            .map_err(|e| source.serde_error(file, e.span, &e.message))?;
        doc.validate().map_err(|e| source.invalid(file, e))?;
        let prefix = absolute(prefix, file)?;
        doc.resolve(&prefix);
        Ok(Conf {
            file: absolute(file, file)?,
            prefix,
            main: doc.main,
            sections: doc.sections,
            written: doc.written,
        })
    }

    /// Whether the file wrote section `T` (rather than leaving it to its defaults).
    pub fn written<T: Section>(&self) -> bool {
        self.written.contains(&T::NAME)
    }

    /// The section `T`, if the wiring registered it.
    pub fn get<T: Section>(&self) -> Option<&T> {
        self.sections
            .iter()
            .find_map(|s| s.as_any().downcast_ref::<T>())
    }

    /// The section `T`.
    ///
    /// # Panics
    ///
    /// When `T` was not registered: the part asking for it is wired without its section.
    pub fn section<T: Section>(&self) -> &T {
        self.get()
            .unwrap_or_else(|| panic!("section [{}] is not registered", T::NAME))
    }

    /// The effective configuration as TOML: every key with its value, defaults filled in and
    /// paths absolute (keys without a default and without a value are left out).
    pub fn dump(&self) -> String {
        let head = format!(
            "# bizzy: effective configuration of {}\n# prefix: {}\n\n",
            self.file.display(),
            self.prefix.display()
        );
        let tables = std::iter::once(AnySection::to_toml(&self.main))
            .chain(self.sections.iter().map(|s| s.to_toml()))
            .collect::<Result<Vec<String>, _>>();
        match tables {
            Ok(tables) => head + &tables.join("\n"),
            Err(e) => format!("{head}# cannot print the configuration: {e}\n"),
        }
    }

    /// Every socket to bind: the distinct listening addresses of the sections (in registration
    /// order, each in order of appearance) with protocol and backlog; a specific address is
    /// folded into a wildcard of the same port and family.
    pub fn listeners(&self) -> Vec<ListenSpec> {
        let mut out: Vec<ListenSpec> = Vec::new();
        for l in self.sections.iter().flat_map(|s| s.listeners()) {
            if !out.iter().any(|o| o.addr == l.addr) {
                out.push(ListenSpec {
                    addr: l.addr,
                    kind: l.protocol,
                    backlog: l.backlog,
                    reuseport: l.reuseport,
                    deferred: l.deferred,
                });
            }
        }
        // A specific address on a port that also has the wildcard address is served by the
        // wildcard socket (Linux refuses to listen on both), as nginx does; the protocol layer
        // finds the address a connection came to with getsockname.
        let all = out.clone();
        out.retain(|l| !all.iter().any(|w| covers(w.addr, l.addr)));
        out
    }
}

#[cfg(test)]
impl Conf {
    /// `text` read as `conf/x.toml` with the prefix `/srv/bizzy` and `T` the one section
    /// registered: for a section's own tests.
    pub(crate) fn parse_only<T>(text: &str) -> Result<Conf, ConfError>
    where
        T: Section + Default + serde::de::DeserializeOwned,
    {
        let mut sections = Sections::new();
        sections.add::<T>();
        let (file, prefix) = (Path::new("conf/x.toml"), Path::new("/srv/bizzy"));
        Conf::parse(text, file, prefix, &sections)
    }
}

/// Whether `wild` is the wildcard address of `addr`'s port and family (and not `addr` itself).
pub fn covers(wild: std::net::SocketAddr, addr: std::net::SocketAddr) -> bool {
    wild.ip().is_unspecified()
        && !addr.ip().is_unspecified()
        && wild.port() == addr.port()
        && wild.is_ipv4() == addr.is_ipv4()
}
