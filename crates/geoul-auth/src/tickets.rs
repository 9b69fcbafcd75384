//! Server tickets: a player moving to another game server gets a short-lived
//! ticket for that server, and the server redeems it — exactly once,
//! cluster-wide, even when two servers race on two nodes.
//!
//! Owns: issuing and redeeming tickets. Does not own: the exactly-once
//! decision itself (the framework's conditional `Take` on the service's
//! consensus group: decided by its Raft leader, acknowledged by a majority)
//! or sessions (`service`).
//!
//! A ticket is a 256-bit token (`gt_…`); the group stores it under the hash
//! of the token with the player, the session it came from and the target
//! server, for `ticket_ttl_s`. Redeeming takes the entry (read and delete in
//! one step), so a second redeem finds nothing; the session is checked
//! again, so a ticket of a session revoked meanwhile does not redeem.

use geoul_service::{CondOp, CondOutcome, Context, HandlerError};
use serde::{Deserialize, Serialize};

use crate::api::{AuthResponse, Denied};
use crate::service::{AuthService, LOCKS};
use crate::token::{Token, TokenKind};

/// Longest server name a ticket may target.
pub const SERVER_NAME_MAX: usize = 128;

/// What the group keeps per ticket.
#[derive(Serialize, Deserialize)]
struct TicketData {
    username: String,
    session_key: Vec<u8>,
    session_id: String,
    target: String,
}

fn check_server(name: &str) -> Result<(), Denied> {
    if name.is_empty() || name.len() > SERVER_NAME_MAX || name.chars().any(char::is_control) {
        return Err(Denied::BadInput(format!(
            "server name must be 1-{SERVER_NAME_MAX} bytes without control characters"
        )));
    }
    Ok(())
}

impl AuthService {
    pub(crate) async fn issue_ticket(
        &self,
        ctx: &Context,
        token: &str,
        target: &str,
    ) -> Result<AuthResponse, HandlerError> {
        if let Err(d) = check_server(target) {
            return Ok(AuthResponse::Denied(d));
        }
        let session = match Token::parse(TokenKind::Session, token) {
            Ok(t) => t,
            Err(e) => return Ok(AuthResponse::Denied(Denied::BadInput(e.to_string()))),
        };
        let level = self.validation_level(ctx)?;
        let Some((grant, _)) = self.grant_at(ctx, &session.key(), false, level).await? else {
            return Ok(AuthResponse::Denied(Denied::InvalidToken));
        };
        let ticket = Token::generate(TokenKind::Ticket)
            .map_err(|e| HandlerError::Unavailable(e.to_string()))?;
        let data = TicketData {
            username: grant.account,
            session_key: session.key(),
            session_id: crate::service::session_id(&session.key()),
            target: target.to_string(),
        };
        let value =
            postcard::to_stdvec(&data).map_err(|e| HandlerError::Unavailable(e.to_string()))?;
        let ttl_ms = self.config.ticket_ttl_s * 1000;
        let op = CondOp::CreateIfAbsent {
            key: ticket.key(),
            value,
            ttl_ms: Some(ttl_ms),
        };
        match ctx.conditional(LOCKS, op).await? {
            CondOutcome::Done { .. } => Ok(AuthResponse::Ticket {
                ticket: ticket.text(),
                expires_at: ctx.now_ms().saturating_add(ttl_ms),
            }),
            CondOutcome::Full => Err(HandlerError::Unavailable(
                "too many live tickets; retry later".into(),
            )),
            other => Err(HandlerError::Unavailable(format!(
                "ticket not stored: {other:?}"
            ))),
        }
    }

    pub(crate) async fn redeem_ticket(
        &self,
        ctx: &Context,
        ticket: &str,
        server: &str,
    ) -> Result<AuthResponse, HandlerError> {
        if let Err(d) = check_server(server) {
            return Ok(AuthResponse::Denied(d));
        }
        let ticket = match Token::parse(TokenKind::Ticket, ticket) {
            Ok(t) => t,
            Err(e) => return Ok(AuthResponse::Denied(Denied::BadInput(e.to_string()))),
        };
        let taken = match ctx
            .conditional(LOCKS, CondOp::Take { key: ticket.key() })
            .await?
        {
            CondOutcome::Taken(Some(entry)) => entry,
            CondOutcome::Taken(None) => return Ok(AuthResponse::Denied(Denied::InvalidToken)),
            other => {
                return Err(HandlerError::Unavailable(format!(
                    "unexpected take outcome {other:?}"
                )))
            }
        };
        let data: TicketData = postcard::from_bytes(&taken.value)
            .map_err(|e| HandlerError::Unavailable(format!("damaged ticket: {e}")))?;
        // A ticket is for one server: presented elsewhere it is spent and
        // refused (someone copied it).
        if data.target != server {
            tracing::warn!(username = %data.username, "ticket presented by another server; refused");
            return Ok(AuthResponse::Denied(Denied::InvalidToken));
        }
        let level = self.validation_level(ctx)?;
        if self
            .grant_at(ctx, &data.session_key, false, level)
            .await?
            .is_none()
        {
            return Ok(AuthResponse::Denied(Denied::InvalidToken));
        }
        Ok(AuthResponse::Redeemed {
            username: data.username,
            session_id: data.session_id,
        })
    }
}
