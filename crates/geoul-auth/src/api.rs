//! The auth service's requests and answers, and [`AuthClient`], the typed
//! way to call it through a `ServiceRef`.
//!
//! Owns: [`AuthRequest`], [`AuthResponse`], [`Denied`], [`Tokens`],
//! [`SessionInfo`], [`AuthError`] and the routing/retry rule of each request.
//! Does not own: what the requests do (`service`).
//!
//! Routing: requests about an account (`register`, `login`, …) go by the
//! username's slot to a replica of the account; token requests (`validate`,
//! `refresh`, `revoke`) go to a random auth node — every auth node holds
//! every session. Field names are the JSON API's (`token`, `expires_at`,
//! Unix milliseconds).

use std::time::Duration;

use geoul_client::{CallError, CallOptions, ServiceRef};
use serde::{Deserialize, Serialize};

/// The service's name.
pub const AUTH: &str = "auth";

/// A request to the auth service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthRequest {
    /// Creates an account.
    Register {
        /// 3-32 of `a-z 0-9 _ . -`, case-insensitive.
        username: String,
        /// 8-256 characters.
        password: String,
    },
    /// Checks a password and issues a session and a refresh token.
    Login {
        /// The account.
        username: String,
        /// Its password.
        password: String,
        /// The player's address as the calling gateway saw it (rate limits
        /// per source); the caller's own address when absent.
        source: Option<String>,
    },
    /// Whether a session token is valid, answered by the node that gets it.
    Validate {
        /// The session token (`gs_…`).
        token: String,
    },
    /// Trades a refresh token for a new session and a new refresh token;
    /// the old pair stops working. Using a refresh token twice revokes every
    /// session descended from the same login.
    Refresh {
        /// The refresh token (`gr_…`).
        refresh_token: String,
    },
    /// Revokes one session (and its refresh token).
    Revoke {
        /// The session token.
        token: String,
    },
    /// Revokes every session of an account.
    RevokeAll {
        /// The account.
        username: String,
    },
    /// The account's live sessions, newest first.
    Sessions {
        /// The account.
        username: String,
    },
    /// Changes a password (and revokes every session of the account).
    ChangePassword {
        /// The account.
        username: String,
        /// Its current password.
        old_password: String,
        /// The new one.
        new_password: String,
    },
    /// Disables (or re-enables) an account; disabling revokes its sessions.
    SetDisabled {
        /// The account.
        username: String,
        /// `true` disables.
        disabled: bool,
    },
    /// Issues a short-lived, single-use ticket for a move of the session's
    /// player to `target_server` (the player hands it to that server).
    IssueTicket {
        /// The player's session token.
        token: String,
        /// The game server the ticket is for (its name or address).
        target_server: String,
    },
    /// Redeems a ticket: succeeds exactly once cluster-wide, and only for
    /// the server it was issued for.
    RedeemTicket {
        /// The ticket (`gt_…`).
        ticket: String,
        /// The redeeming server (must equal the ticket's target).
        server: String,
    },
}

/// A session and refresh token pair.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// The account, normalized.
    pub username: String,
    /// The session token: present it to validate.
    pub token: String,
    /// When the session expires, Unix ms.
    pub expires_at: u64,
    /// The refresh token: trade it for a new pair before `refresh_expires_at`.
    pub refresh_token: String,
    /// When the refresh token expires, Unix ms.
    pub refresh_expires_at: u64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("username", &self.username)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A live session as validation and listings show it (never its token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The account.
    pub username: String,
    /// A public id of the session (not usable as a token).
    pub session_id: String,
    /// The login the session descends from (refreshes keep it).
    pub family: String,
    /// When it was issued, Unix ms.
    pub issued_at: u64,
    /// When it expires, Unix ms.
    pub expires_at: u64,
    /// The node that issued it.
    pub issued_by: String,
}

/// Why the service said no (an answer, not a failure of the cluster).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Denied {
    /// Unknown username or wrong password: the same answer for both, so
    /// the answer does not tell which usernames exist.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// The password was right but the account is disabled.
    #[error("account disabled")]
    AccountDisabled,
    /// Too many attempts.
    #[error("rate limited, retry after {} s", retry_after_ms.div_ceil(1000))]
    RateLimited {
        /// How long to wait, ms.
        retry_after_ms: u64,
    },
    /// Unknown, expired or revoked token.
    #[error("invalid or expired token")]
    InvalidToken,
    /// A refresh token was used twice: every session of that login is now
    /// revoked (someone else may hold a copy of it).
    #[error("refresh token reused; every session of that login is revoked")]
    RefreshReused,
    /// Registration of a name that exists.
    #[error("username {0:?} is taken")]
    UsernameTaken(String),
    /// No such account (only for requests that do not check a password).
    #[error("no account {0:?}")]
    NoAccount(String),
    /// Malformed input; the reason says which field and why.
    #[error("{0}")]
    BadInput(String),
}

impl Denied {
    /// A short name of the reason (metric labels, load-generator columns).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidCredentials => "invalid_credentials",
            Self::AccountDisabled => "disabled",
            Self::RateLimited { .. } => "rate_limited",
            Self::InvalidToken => "invalid_token",
            Self::RefreshReused => "refresh_reused",
            Self::UsernameTaken(_) => "taken",
            Self::NoAccount(_) => "no_account",
            Self::BadInput(_) => "bad_input",
        }
    }
}

/// What the auth service answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthResponse {
    /// The account exists now.
    Registered {
        /// The normalized username.
        username: String,
    },
    /// A new token pair (login, refresh).
    Tokens(Tokens),
    /// The session is valid.
    Valid(SessionInfo),
    /// Sessions revoked.
    Revoked {
        /// How many.
        sessions: u32,
    },
    /// An account's live sessions.
    Sessions {
        /// Newest first.
        sessions: Vec<SessionInfo>,
        /// Some slot could not be asked: the list may be short.
        partial: bool,
    },
    /// The account was changed (password, disabled flag).
    Updated {
        /// Sessions revoked by the change.
        revoked: u32,
    },
    /// A server ticket.
    Ticket {
        /// The ticket (`gt_…`), single use.
        ticket: String,
        /// When it expires, Unix ms.
        expires_at: u64,
    },
    /// A ticket was redeemed (this answer is given once per ticket).
    Redeemed {
        /// The player.
        username: String,
        /// The session the ticket was issued from.
        session_id: String,
    },
    /// No.
    Denied(Denied),
}

/// Why a typed auth call failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The service said no.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The cluster could not answer (no live node, deadline, …).
    #[error(transparent)]
    Call(#[from] CallError),
    /// The service answered something this request cannot get (a version
    /// mismatch between client and nodes).
    #[error("unexpected answer from the auth service: {0}")]
    Unexpected(String),
}

/// Default deadline of auth calls: a login includes one argon2id hash and a
/// write acknowledged by a majority of auth nodes.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(5);

impl AuthRequest {
    /// The routing key: the username for account requests, none (a random
    /// auth node) for token requests.
    pub fn routing_key(&self) -> Option<Vec<u8>> {
        let name = match self {
            Self::Register { username, .. }
            | Self::Login { username, .. }
            | Self::RevokeAll { username }
            | Self::Sessions { username }
            | Self::ChangePassword { username, .. }
            | Self::SetDisabled { username, .. } => username,
            Self::Validate { .. }
            | Self::Refresh { .. }
            | Self::Revoke { .. }
            | Self::IssueTicket { .. }
            | Self::RedeemTicket { .. } => return None,
        };
        Some(crate::records::account_key(&name.to_ascii_lowercase()))
    }

    /// Whether running it twice is harmless (so the ref may retry it on
    /// another node after a lost reply).
    pub fn idempotent(&self) -> bool {
        matches!(
            self,
            Self::Validate { .. }
                | Self::Revoke { .. }
                | Self::RevokeAll { .. }
                | Self::Sessions { .. }
                | Self::SetDisabled { .. }
        )
    }
}

/// The auth service through a `ServiceRef`, with typed answers.
#[derive(Clone)]
pub struct AuthClient {
    service: ServiceRef,
    timeout: Duration,
}

impl AuthClient {
    /// Wraps a ref to the `auth` service (`client.service(AUTH)`).
    pub fn new(service: ServiceRef) -> Self {
        Self {
            service,
            timeout: AUTH_TIMEOUT,
        }
    }

    /// The same with another deadline per call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends `request` with its routing and retry rule; a denial is an `Err`.
    pub async fn request(&self, request: &AuthRequest) -> Result<AuthResponse, AuthError> {
        let options = CallOptions {
            timeout: Some(self.timeout),
            idempotent: request.idempotent(),
            idempotency_key: None,
        };
        let key = request.routing_key();
        // No key: any auth node, chosen at random.
        let response: AuthResponse = self
            .service
            .call_with(key.as_deref(), request, options)
            .await?;
        match response {
            AuthResponse::Denied(d) => Err(AuthError::Denied(d)),
            other => Ok(other),
        }
    }

    /// Creates an account.
    pub async fn register(&self, username: &str, password: &str) -> Result<String, AuthError> {
        let r = AuthRequest::Register {
            username: username.into(),
            password: password.into(),
        };
        match self.request(&r).await? {
            AuthResponse::Registered { username } => Ok(username),
            other => Err(unexpected(&other)),
        }
    }

    /// Logs in.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        source: Option<&str>,
    ) -> Result<Tokens, AuthError> {
        let r = AuthRequest::Login {
            username: username.into(),
            password: password.into(),
            source: source.map(Into::into),
        };
        match self.request(&r).await? {
            AuthResponse::Tokens(t) => Ok(t),
            other => Err(unexpected(&other)),
        }
    }

    /// Validates a session token.
    pub async fn validate(&self, token: &str) -> Result<SessionInfo, AuthError> {
        let r = AuthRequest::Validate {
            token: token.into(),
        };
        match self.request(&r).await? {
            AuthResponse::Valid(s) => Ok(s),
            other => Err(unexpected(&other)),
        }
    }

    /// Trades a refresh token for a new pair.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, AuthError> {
        let r = AuthRequest::Refresh {
            refresh_token: refresh_token.into(),
        };
        match self.request(&r).await? {
            AuthResponse::Tokens(t) => Ok(t),
            other => Err(unexpected(&other)),
        }
    }

    /// Revokes one session; the count is 0 when it was not live.
    pub async fn revoke(&self, token: &str) -> Result<u32, AuthError> {
        let r = AuthRequest::Revoke {
            token: token.into(),
        };
        match self.request(&r).await? {
            AuthResponse::Revoked { sessions } => Ok(sessions),
            other => Err(unexpected(&other)),
        }
    }

    /// Revokes every session of an account.
    pub async fn revoke_all(&self, username: &str) -> Result<u32, AuthError> {
        let r = AuthRequest::RevokeAll {
            username: username.into(),
        };
        match self.request(&r).await? {
            AuthResponse::Revoked { sessions } => Ok(sessions),
            other => Err(unexpected(&other)),
        }
    }

    /// An account's live sessions and whether the list may be short.
    pub async fn sessions(&self, username: &str) -> Result<(Vec<SessionInfo>, bool), AuthError> {
        let r = AuthRequest::Sessions {
            username: username.into(),
        };
        match self.request(&r).await? {
            AuthResponse::Sessions { sessions, partial } => Ok((sessions, partial)),
            other => Err(unexpected(&other)),
        }
    }

    /// Changes a password; returns the sessions revoked.
    pub async fn change_password(
        &self,
        username: &str,
        old_password: &str,
        new_password: &str,
    ) -> Result<u32, AuthError> {
        let r = AuthRequest::ChangePassword {
            username: username.into(),
            old_password: old_password.into(),
            new_password: new_password.into(),
        };
        match self.request(&r).await? {
            AuthResponse::Updated { revoked } => Ok(revoked),
            other => Err(unexpected(&other)),
        }
    }

    /// Issues a single-use ticket for a move to `target_server`; returns it
    /// and its expiry (Unix ms).
    pub async fn issue_ticket(
        &self,
        token: &str,
        target_server: &str,
    ) -> Result<(String, u64), AuthError> {
        let r = AuthRequest::IssueTicket {
            token: token.into(),
            target_server: target_server.into(),
        };
        match self.request(&r).await? {
            AuthResponse::Ticket { ticket, expires_at } => Ok((ticket, expires_at)),
            other => Err(unexpected(&other)),
        }
    }

    /// Redeems a ticket as `server`; `Ok` at most once per ticket, anywhere.
    /// Returns the player and the session id.
    pub async fn redeem_ticket(
        &self,
        ticket: &str,
        server: &str,
    ) -> Result<(String, String), AuthError> {
        let r = AuthRequest::RedeemTicket {
            ticket: ticket.into(),
            server: server.into(),
        };
        match self.request(&r).await? {
            AuthResponse::Redeemed {
                username,
                session_id,
            } => Ok((username, session_id)),
            other => Err(unexpected(&other)),
        }
    }

    /// Disables or re-enables an account; returns the sessions revoked.
    pub async fn set_disabled(&self, username: &str, disabled: bool) -> Result<u32, AuthError> {
        let r = AuthRequest::SetDisabled {
            username: username.into(),
            disabled,
        };
        match self.request(&r).await? {
            AuthResponse::Updated { revoked } => Ok(revoked),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(response: &AuthResponse) -> AuthError {
    let what = match response {
        AuthResponse::Registered { .. } => "registered",
        AuthResponse::Tokens(_) => "tokens",
        AuthResponse::Valid(_) => "valid",
        AuthResponse::Revoked { .. } => "revoked",
        AuthResponse::Sessions { .. } => "sessions",
        AuthResponse::Updated { .. } => "updated",
        AuthResponse::Ticket { .. } => "ticket",
        AuthResponse::Redeemed { .. } => "redeemed",
        AuthResponse::Denied(_) => "denied",
    };
    AuthError::Unexpected(what.into())
}
