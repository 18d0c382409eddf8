//! Configuration: TOML sections, typed durations and sizes, validation.
