//! The services the `geoul` binary can host by name.
//!
//! Owns: the list of built-in services and building them from a node's
//! configuration. Does not own: the services themselves.

use std::sync::Arc;

use geoul_auth::{AuthService, AUTH};
use geoul_dir::{DirService, DIR};
use geoul_service::{hosted, DynService};

use crate::config::NodeConfig;
use crate::kv::{KvService, KV};

/// Names accepted in `services = [...]`.
pub const BUILTIN: &[&str] = &[KV, AUTH, DIR];

/// Why a built-in service could not be built.
#[derive(Debug, thiserror::Error)]
#[error("service {service}: {reason}")]
pub struct BuiltinError {
    /// The service.
    pub service: String,
    /// Why.
    pub reason: String,
}

/// The services `config` asks for (names were checked by config validation).
pub fn services(config: &NodeConfig) -> Result<Vec<Arc<dyn DynService>>, BuiltinError> {
    let mut out = Vec::new();
    for name in &config.services {
        match name.as_str() {
            KV => out.push(hosted(KvService::new(config.kv.clone()))),
            AUTH => {
                let auth =
                    AuthService::new(config.auth.clone()).map_err(|reason| BuiltinError {
                        service: AUTH.into(),
                        reason,
                    })?;
                out.push(hosted(auth));
            }
            DIR => {
                let dir = DirService::new(config.dir.clone()).map_err(|reason| BuiltinError {
                    service: DIR.into(),
                    reason,
                })?;
                out.push(hosted(dir));
            }
            _ => {}
        }
    }
    Ok(out)
}
