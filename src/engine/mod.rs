//! The per-key engine: the decisions of a policy over one key's words.

pub(crate) mod log;
