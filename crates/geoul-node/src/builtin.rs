//! The services the `geoul` binary can host by name.
//!
//! Owns: the list of built-in services and building them from a node's
//! configuration. Does not own: the services themselves.

use std::sync::Arc;

use geoul_service::{hosted, DynService};

use crate::config::NodeConfig;
use crate::kv::{KvService, KV};

/// Names accepted in `services = [...]`.
pub const BUILTIN: &[&str] = &[KV];

/// The services `config` asks for (names were checked by config validation).
pub fn services(config: &NodeConfig) -> Vec<Arc<dyn DynService>> {
    config
        .services
        .iter()
        .filter_map(|name| match name.as_str() {
            KV => Some(hosted(KvService::new(config.kv.clone()))),
            _ => None,
        })
        .collect()
}
