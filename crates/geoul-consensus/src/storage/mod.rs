//! Durable storage of one group: the redb file (`db`), openraft's log storage (`log`)
//! and state machine with persisted snapshots (`sm`).
//!
//! Owns: everything on disk. Does not own: Raft logic (openraft), message encoding
//! (`wire`), the meaning of commands (`machine`).

pub(crate) mod db;
pub(crate) mod log;
pub(crate) mod sm;

#[cfg(test)]
mod suite;
