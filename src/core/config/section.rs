//! Sections that the parts of the server register: core reads `[main]` and hands every other
//! top-level table to the part that declared its name.
//!
//! The wiring (`server.rs`) builds one [`Sections`] and passes it to [`super::Conf::load`]; a
//! protocol or module declares its table by implementing [`Section`] (and [`SectionKind`] when
//! reading it needs more than serde, e.g. when a value must be one of the names other parts
//! registered). Core stores each section behind [`AnySection`] and hands it back typed with
//! [`super::Conf::section`]. Core never names a protocol or a module here: sections say which
//! sockets they listen on with a [`Protocol`] of their own.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use toml::de::ValueDeserializer;

use super::error::{Invalid, KeyPath};

/// The protocol spoken on a listening socket, named by the layer that serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Protocol {
    /// A short name, e.g. the section that configures it.
    pub name: &'static str,
    /// How messages name it: "is already an {label} address".
    pub label: &'static str,
}

impl Protocol {
    /// The protocol of a socket handed over by a previous binary until a cycle claims its
    /// address.
    pub const INHERITED: Protocol = Protocol {
        name: "inherited",
        label: "inherited",
    };
}

/// A listening address a section asks for, with where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub backlog: i32,
    /// One socket per worker (`SO_REUSEPORT`) rather than one shared by all.
    pub reuseport: bool,
    /// Seconds of `TCP_DEFER_ACCEPT`, 0 for none.
    pub deferred: u32,
    /// The key of this address, e.g. `NAME.listen[0]`.
    pub at: KeyPath,
    /// What owns it, named in messages about it: the section, or a table inside it.
    pub owner: KeyPath,
}

/// A top-level table of the configuration file, declared by the part that reads it.
pub trait Section: Any + Clone + fmt::Debug + PartialEq + Serialize + Send + Sync {
    /// The table's name in the file: `"name"` for `[name]`.
    const NAME: &'static str;

    /// Ranges and cross-references within the section; errors name their key.
    fn validate(&self) -> Result<(), Invalid>;

    /// Makes relative paths absolute against the prefix.
    fn resolve(&mut self, _prefix: &Path) {}

    /// The addresses this section listens on, in the order they are written.
    fn listeners(&self) -> Vec<Listener> {
        Vec::new()
    }
}

/// A section value with its type erased, as [`super::Conf`] stores it.
pub trait AnySection: Any + fmt::Debug + Send + Sync {
    /// [`Section::NAME`].
    fn name(&self) -> &'static str;
    /// For [`super::Conf::get`] to downcast.
    fn as_any(&self) -> &dyn Any;
    fn clone_box(&self) -> Box<dyn AnySection>;
    /// Equality with a section of any type (false across types).
    fn same(&self, other: &dyn AnySection) -> bool;
    /// [`Section::validate`].
    fn validate(&self) -> Result<(), Invalid>;
    /// [`Section::resolve`].
    fn resolve(&mut self, prefix: &Path);
    /// [`Section::listeners`].
    fn listeners(&self) -> Vec<Listener>;
    /// The section as a TOML document of one table, `[name]` and its keys.
    fn to_toml(&self) -> Result<String, toml::ser::Error>;
}

impl<T: Section> AnySection for T {
    fn name(&self) -> &'static str {
        T::NAME
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn clone_box(&self) -> Box<dyn AnySection> {
        Box::new(self.clone())
    }

    fn same(&self, other: &dyn AnySection) -> bool {
        other.as_any().downcast_ref::<T>() == Some(self)
    }

    fn validate(&self) -> Result<(), Invalid> {
        Section::validate(self)
    }

    fn resolve(&mut self, prefix: &Path) {
        Section::resolve(self, prefix)
    }

    fn listeners(&self) -> Vec<Listener> {
        Section::listeners(self)
    }

    fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(&BTreeMap::from([(T::NAME, self)]))
    }
}

impl Clone for Box<dyn AnySection> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

impl PartialEq for Box<dyn AnySection> {
    fn eq(&self, other: &Self) -> bool {
        self.same(other.as_ref())
    }
}

/// How a registered section is read from its table and what it is when the file leaves it out.
pub trait SectionKind: Send + Sync {
    fn name(&self) -> &'static str;
    /// The section when the file has no such table.
    fn default_value(&self) -> Box<dyn AnySection>;
    /// Reads the table through toml's own deserializer, so errors keep their spans.
    fn read(&self, value: ValueDeserializer<'_>) -> Result<Box<dyn AnySection>, toml::de::Error>;
}

/// The kind of a section that serde reads alone, with its `Default` for a missing table.
struct Plain<T>(std::marker::PhantomData<fn() -> T>);

impl<T: Section + Default + DeserializeOwned> SectionKind for Plain<T> {
    fn name(&self) -> &'static str {
        T::NAME
    }

    fn default_value(&self) -> Box<dyn AnySection> {
        Box::new(T::default())
    }

    fn read(&self, value: ValueDeserializer<'_>) -> Result<Box<dyn AnySection>, toml::de::Error> {
        T::deserialize(value).map(|s| Box::new(s) as Box<dyn AnySection>)
    }
}

/// Every section the server knows besides `[main]`, in the order `bizzy -T` prints them and
/// validation checks them.
#[derive(Default)]
pub struct Sections {
    kinds: Vec<Box<dyn SectionKind>>,
}

impl fmt::Debug for Sections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Sections {
    /// No section but `[main]`.
    pub fn new() -> Sections {
        Sections::default()
    }

    /// Adds a section read by serde alone.
    pub fn add<T: Section + Default + DeserializeOwned>(&mut self) -> &mut Sections {
        self.add_kind(Box::new(Plain::<T>(std::marker::PhantomData)))
    }

    /// Adds a section with its own way of reading.
    ///
    /// # Panics
    ///
    /// When the name is `main` or already registered: two parts claiming one table is a
    /// mistake in the wiring, not in the file.
    pub fn add_kind(&mut self, kind: Box<dyn SectionKind>) -> &mut Sections {
        let name = kind.name();
        assert!(
            name != "main" && self.find(name).is_none(),
            "section [{name}] registered twice"
        );
        self.kinds.push(kind);
        self
    }

    /// The registered names, in order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.iter().map(|k| k.name())
    }

    pub(super) fn kinds(&self) -> &[Box<dyn SectionKind>] {
        &self.kinds
    }

    pub(super) fn find(&self, name: &str) -> Option<usize> {
        self.kinds.iter().position(|k| k.name() == name)
    }
}

/// serde's "unknown field" message for a key not among `known`, which the error mapping turns
/// into "unknown key (did you mean ...)".
pub(super) fn unknown_field(key: &str, known: &[&str]) -> String {
    let known: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
    format!(
        "unknown field `{key}`, expected one of {}",
        known.join(", ")
    )
}
