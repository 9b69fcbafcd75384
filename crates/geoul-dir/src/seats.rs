//! Seat reservations: `reserve(id, slots)` raises an instance's `players`
//! only while it stays within `max_players`, exactly, however many players
//! race for the last seats on however many nodes.
//!
//! Owns: [`SEATS`] (the service's consensus group), the seat counter of an
//! instance in it and the reserve/set operations on it. Does not own:
//! consensus (the framework's `Context::conditional`) or the entry
//! (`instance`).
//!
//! Last-writer-wins cannot count: two nodes that both read 49 of 50 would
//! both write 50. So the count that admits players is a counter in the
//! service's consensus group, changed only by compare-and-set on its
//! version (the Raft log index). The first `reserve` of an instance creates
//! it from the entry's `players` and marks the entry (`seats`); from then on
//! `update`s of `players` or `max_players` also go through the counter, and
//! every other update takes `players` from it, so a game server's report
//! and a reservation cannot lose each other. The entry's `players` follows
//! the counter (it is written after each change and rewritten if a
//! concurrent change overtook it); admission is decided by the counter
//! alone. A counter is tied to one registration (`registered_at`): a new
//! registration of the id starts a new count, with no consensus round on
//! registration. Instances never reserved pay nothing for this.

use std::time::Duration;

use geoul_service::{CondEntry, CondOp, CondOutcome, Context, HandlerError};

use crate::api::{DirDenied, DirResponse};
use crate::instance::{Instance, MAX_PLAYERS_MAX};
use crate::service::DirService;

/// The directory's consensus group (seat counters).
pub const SEATS: &str = "instance-directory.seats";

/// Compare-and-set rounds before a reservation gives up as contended.
const ATTEMPTS: usize = 32;
/// Rewrites of the entry when a concurrent change overtook ours.
const FOLLOW_UPS: usize = 3;
/// Shortest life of a counter (it is renewed by every change).
const COUNTER_TTL_MIN: Duration = Duration::from_secs(600);

/// A seat counter: the registration it belongs to, the seats taken, the
/// capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Count {
    pub(crate) registered_at: u64,
    pub(crate) players: u32,
    pub(crate) max: u32,
}

impl Count {
    fn encode(self) -> Vec<u8> {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(&self.registered_at.to_le_bytes());
        v.extend_from_slice(&self.players.to_le_bytes());
        v.extend_from_slice(&self.max.to_le_bytes());
        v
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let registered_at = u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
        let players = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?);
        let max = u32::from_le_bytes(bytes.get(12..16)?.try_into().ok()?);
        Some(Self {
            registered_at,
            players,
            max,
        })
    }
}

/// The counter entry of `instance`, if it belongs to this registration,
/// and the version a compare-and-set must expect (of whatever is there).
fn current(instance: &Instance, entry: Option<CondEntry>) -> (Option<Count>, Option<u64>) {
    let expected = entry.as_ref().map(|e| e.version);
    let count = entry
        .and_then(|e| Count::decode(&e.value))
        .filter(|c| c.registered_at == instance.registered_at);
    (count, expected)
}

fn counter_ttl_ms(instance: &Instance) -> u64 {
    let min = u64::try_from(COUNTER_TTL_MIN.as_millis()).unwrap_or(u64::MAX);
    instance.ttl_ms.saturating_mul(2).max(min)
}

fn unexpected(what: &str, outcome: &CondOutcome) -> HandlerError {
    HandlerError::Unavailable(format!(
        "seat counter {what}: unexpected outcome {outcome:?}"
    ))
}

impl DirService {
    /// The counter of `instance`, read through the group's log.
    pub(crate) async fn seat_count(
        &self,
        ctx: &Context,
        instance: &Instance,
    ) -> Result<(Option<Count>, Option<u64>), HandlerError> {
        let op = CondOp::Get {
            key: instance.id.as_bytes().to_vec(),
        };
        match ctx.conditional(SEATS, op).await? {
            CondOutcome::Value(entry) => Ok(current(instance, entry)),
            other => Err(unexpected("read", &other)),
        }
    }

    /// Compare-and-set of the counter; `Ok(false)` when another change won.
    async fn swap(
        &self,
        ctx: &Context,
        instance: &Instance,
        expected: Option<u64>,
        count: Count,
    ) -> Result<bool, HandlerError> {
        let op = CondOp::CompareAndSet {
            key: instance.id.as_bytes().to_vec(),
            expected,
            value: Some(count.encode()),
            ttl_ms: Some(counter_ttl_ms(instance)),
        };
        match ctx.conditional(SEATS, op).await? {
            CondOutcome::Done { .. } => Ok(true),
            CondOutcome::Conflict { .. } => Ok(false),
            CondOutcome::Full => Err(HandlerError::Unavailable(
                "too many seat counters; retry later".into(),
            )),
            other => Err(unexpected("write", &other)),
        }
    }

    /// Sets the counter of `instance` to a game server's report.
    pub(crate) async fn set_seats(
        &self,
        ctx: &Context,
        instance: &Instance,
        players: u32,
        max: u32,
    ) -> Result<(), HandlerError> {
        let count = Count {
            registered_at: instance.registered_at,
            players,
            max,
        };
        for _ in 0..ATTEMPTS {
            let (_, expected) = self.seat_count(ctx, instance).await?;
            if self.swap(ctx, instance, expected, count).await? {
                return Ok(());
            }
        }
        Err(HandlerError::Unavailable(format!(
            "seat counter of {:?} too contended; retry",
            instance.id
        )))
    }

    /// Reserves `slots` seats of `id`: exactly-once admission against its
    /// capacity, then the entry's `players` follows.
    pub(crate) async fn reserve(
        &self,
        ctx: &Context,
        id: &str,
        slots: u32,
    ) -> Result<DirResponse, HandlerError> {
        if let Err(e) = crate::instance::check_id(id) {
            return Ok(DirResponse::Denied(DirDenied::BadInput(e.to_string())));
        }
        if slots == 0 || slots > MAX_PLAYERS_MAX {
            return Ok(DirResponse::Denied(DirDenied::BadInput(format!(
                "slots: must be 1-{MAX_PLAYERS_MAX}, got {slots}"
            ))));
        }
        for _ in 0..ATTEMPTS {
            let Some((_, instance)) = self.live(ctx, id).await? else {
                return Ok(DirResponse::Denied(DirDenied::NotFound(id.to_string())));
            };
            let (count, expected) = self.seat_count(ctx, &instance).await?;
            let count = count.unwrap_or(Count {
                registered_at: instance.registered_at,
                players: instance.players,
                max: instance.max_players,
            });
            let free = count.max.saturating_sub(count.players);
            if slots > free {
                return Ok(DirResponse::Denied(DirDenied::NoRoom {
                    id: id.to_string(),
                    free,
                    asked: slots,
                }));
            }
            let taken = Count {
                players: count.players + slots,
                ..count
            };
            if !self.swap(ctx, &instance, expected, taken).await? {
                continue;
            }
            self.follow(ctx, &instance, taken).await?;
            return Ok(DirResponse::Reserved {
                id: id.to_string(),
                players: taken.players,
                max_players: taken.max,
            });
        }
        Err(HandlerError::Unavailable(format!(
            "seats of {id:?} too contended; retry"
        )))
    }

    /// Writes the counter's `count` into the entry, then rewrites it while
    /// a concurrent change overtook it (bounded; the next change fixes the
    /// rest).
    async fn follow(
        &self,
        ctx: &Context,
        instance: &Instance,
        mut count: Count,
    ) -> Result<(), HandlerError> {
        let mut spec = instance.spec();
        for _ in 0..FOLLOW_UPS {
            spec.players = count.players;
            spec.max_players = count.max;
            let mut meta = instance.meta(ctx.now_ms());
            meta.seats = true;
            if let DirResponse::Denied(d) = self.write(ctx, &instance.id, &spec, &meta).await? {
                return Err(HandlerError::Unavailable(format!(
                    "seat taken but the entry was not updated: {d}"
                )));
            }
            match self.seat_count(ctx, instance).await? {
                (Some(now), _) if now != count => count = now,
                _ => return Ok(()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_round_trip_and_short_bytes_are_refused() {
        let c = Count {
            registered_at: 1_700_000_000_123,
            players: 49,
            max: 50,
        };
        assert_eq!(Count::decode(&c.encode()), Some(c));
        assert_eq!(Count::decode(&c.encode()[..15]), None);
    }
}
