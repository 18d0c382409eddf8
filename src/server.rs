//! Wires the modules, protocols and processes together.
