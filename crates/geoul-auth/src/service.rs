//! The auth service: what each request does, on the public `Service` API.
//!
//! Owns: [`AuthService`] (accounts, logins, sessions, refresh rotation with
//! reuse detection, revocation, rate limits). Does not own: the storage
//! layout (`records`), hashing (`password`), tokens (`token`) or buckets
//! (`limits`).
//!
//! Results, not requests, are replicated: a login is checked and hashed on
//! one node; only the session it produced travels, to every auth node, so
//! `validate` is a local read anywhere — also after the issuing node died.
//!
//! Revocation is a marker in the `All` table that every validation checks
//! (`records`). Revoking everything of an account stamps `revoked_before =
//! now + skew margin` on the account (Quorum) and in the marker, and a login
//! stamps its session no earlier than the account's `revoked_before`: a
//! session issued on a node whose clock runs behind is still revoked, and a
//! login right after a password change still gets a session that validates.

use std::time::Duration;

use geoul_client::query_lang::{CmpOp, Expr, OrderKey, Query};
use geoul_service::{Context, HandlerError, Limits, PutOptions, ReadLevel, Service};
use geoul_store::{TableSpec, Value};
use prometheus_client::registry::Registry;

use crate::api::{AuthRequest, AuthResponse, Denied, SessionInfo, Tokens, AUTH};
use crate::config::AuthConfig;
use crate::limits::Limiter;
pub use crate::locks::LOCKS;
use crate::locks::{lock_key, REFRESH_LOCK, REGISTER_LOCK};
use crate::metrics::AuthMetrics;
use crate::names::{NameError, Password, Username};
use crate::password::{HashError, Hasher};
use crate::records::{
    account_key, account_marker_key, family_marker_key, tables, Account, Grant, Marker,
    RecordError, ACCOUNTS, SESSIONS,
};
use crate::token::{random_id, Token, TokenError, TokenKind};

/// Entries deleted per pass when revoking many (bounded work per request).
const REVOKE_PAGE: u32 = 1000;
/// Passes per revocation request; what is left is still revoked by the
/// marker and expires with its TTL.
const REVOKE_PASSES: usize = 10;

/// The auth service.
pub struct AuthService {
    pub(crate) config: AuthConfig,
    hasher: Hasher,
    sources: Limiter,
    accounts: Limiter,
    metrics: AuthMetrics,
}

impl AuthService {
    /// A service with `config` (validated); computes one decoy hash.
    pub fn new(config: AuthConfig) -> Result<Self, String> {
        config
            .validate()
            .map_err(|(f, why)| format!("{f}: {why}"))?;
        let hasher = Hasher::new(config.argon2, config.hash_parallelism, config.hash_queue)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            sources: Limiter::new(config.source_limit, config.limiter_keys),
            accounts: Limiter::new(config.account_limit, config.limiter_keys),
            hasher,
            config,
            metrics: AuthMetrics::default(),
        })
    }

    /// Its metrics (shared handles).
    pub fn metrics(&self) -> AuthMetrics {
        self.metrics.clone()
    }
}

fn store_err(e: RecordError) -> HandlerError {
    HandlerError::Unavailable(e.to_string())
}

fn hash_err(e: HashError) -> HandlerError {
    match e {
        // Nothing was done: the ref may try another node.
        HashError::Busy { .. } => HandlerError::NotReady(e.to_string()),
        other => HandlerError::Unavailable(other.to_string()),
    }
}

fn token_err(e: TokenError) -> HandlerError {
    HandlerError::Unavailable(e.to_string())
}

fn bad_name(e: NameError) -> Denied {
    Denied::BadInput(e.to_string())
}

fn retry_after(wait: Duration) -> Denied {
    Denied::RateLimited {
        retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1),
    }
}

/// The metric label of an answer.
fn outcome(r: &Result<AuthResponse, HandlerError>) -> &'static str {
    match r {
        Ok(AuthResponse::Denied(d)) => d.kind(),
        Ok(_) => "ok",
        Err(_) => "error",
    }
}

fn op_name(r: &AuthRequest) -> &'static str {
    match r {
        AuthRequest::Register { .. } => "register",
        AuthRequest::Login { .. } => "login",
        AuthRequest::Validate { .. } => "validate",
        AuthRequest::Refresh { .. } => "refresh",
        AuthRequest::Revoke { .. } => "revoke",
        AuthRequest::RevokeAll { .. } => "revoke_all",
        AuthRequest::Sessions { .. } => "sessions",
        AuthRequest::ChangePassword { .. } => "change_password",
        AuthRequest::SetDisabled { .. } => "set_disabled",
        AuthRequest::IssueTicket { .. } => "issue_ticket",
        AuthRequest::RedeemTicket { .. } => "redeem_ticket",
    }
}

/// `Ok(Denied(..))` from inside a handler step.
macro_rules! deny {
    ($d:expr) => {
        return Ok(AuthResponse::Denied($d))
    };
}

impl Service for AuthService {
    type Request = AuthRequest;
    type Response = AuthResponse;

    fn name(&self) -> &str {
        AUTH
    }

    fn tables(&self) -> Vec<TableSpec> {
        tables(self.config.session_ack)
    }

    fn limits(&self) -> Limits {
        Limits {
            // Answers carry tokens: recording them for dedup would store
            // secrets server-side. Retries are safe where marked idempotent.
            idempotency_window: None,
            request_bytes_max: 16 * 1024,
            ..Limits::default()
        }
    }

    fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.register(registry);
    }

    fn conditional_groups(&self) -> Vec<String> {
        vec![LOCKS.to_string()]
    }

    async fn handle(
        &self,
        ctx: Context,
        request: AuthRequest,
    ) -> Result<AuthResponse, HandlerError> {
        let op = op_name(&request);
        let result = match request {
            AuthRequest::Register { username, password } => {
                self.register(&ctx, &username, &password).await
            }
            AuthRequest::Login {
                username,
                password,
                source,
            } => self.login(&ctx, &username, &password, source).await,
            AuthRequest::Validate { token } => self.validate(&ctx, &token).await,
            AuthRequest::Refresh { refresh_token } => self.refresh(&ctx, &refresh_token).await,
            AuthRequest::Revoke { token } => self.revoke(&ctx, &token).await,
            AuthRequest::RevokeAll { username } => match Username::parse(&username) {
                Err(e) => Ok(AuthResponse::Denied(bad_name(e))),
                Ok(u) => self
                    .revoke_account(&ctx, &u, None)
                    .await
                    .map(|n| AuthResponse::Revoked { sessions: n }),
            },
            AuthRequest::Sessions { username } => self.sessions(&ctx, &username).await,
            AuthRequest::ChangePassword {
                username,
                old_password,
                new_password,
            } => {
                self.change_password(&ctx, &username, &old_password, &new_password)
                    .await
            }
            AuthRequest::SetDisabled { username, disabled } => {
                self.set_disabled(&ctx, &username, disabled).await
            }
            AuthRequest::IssueTicket {
                token,
                target_server,
            } => self.issue_ticket(&ctx, &token, &target_server).await,
            AuthRequest::RedeemTicket { ticket, server } => {
                self.redeem_ticket(&ctx, &ticket, &server).await
            }
        };
        self.metrics.count(op, outcome(&result));
        result
    }
}

impl AuthService {
    async fn account(&self, ctx: &Context, u: &Username) -> Result<Option<Account>, HandlerError> {
        match ctx
            .get_with(ACCOUNTS, &account_key(u.as_str()), ReadLevel::Quorum)
            .await?
        {
            None => Ok(None),
            Some(r) => Ok(Some(Account::from_doc(&r.doc).map_err(store_err)?)),
        }
    }

    async fn register(
        &self,
        ctx: &Context,
        username: &str,
        password: &str,
    ) -> Result<AuthResponse, HandlerError> {
        let u = match Username::parse(username) {
            Ok(u) => u,
            Err(e) => deny!(bad_name(e)),
        };
        let p = match Password::parse(password) {
            Ok(p) => p,
            Err(e) => deny!(bad_name(e)),
        };
        // Hashed before the lock: a node at hashing capacity refuses before
        // it did anything (the ref then tries another node), and a taken
        // name costs what a free one costs.
        let hash = self.hasher.hash(&p).await.map_err(hash_err)?;
        // One registration of a name at a time, cluster-wide: the winner of
        // the lock checks and writes; a racer finds the account, or is told
        // to retry while the winner is still writing it.
        let key = lock_key(b'n', u.as_str().as_bytes());
        let Some(version) = self.lock_version(ctx, &key, REGISTER_LOCK).await? else {
            if self.account(ctx, &u).await?.is_some() {
                deny!(Denied::UsernameTaken(u.to_string()));
            }
            return Err(HandlerError::Unavailable(format!(
                "a registration of {u} is in progress; retry in a few seconds"
            )));
        };
        let result = self.create_account(ctx, &u, hash).await;
        if !matches!(result, Ok(AuthResponse::Registered { .. })) {
            self.unlock(ctx, &key, version).await;
        }
        result
    }

    async fn create_account(
        &self,
        ctx: &Context,
        u: &Username,
        hash: String,
    ) -> Result<AuthResponse, HandlerError> {
        if self.account(ctx, u).await?.is_some() {
            deny!(Denied::UsernameTaken(u.to_string()));
        }
        let account = Account {
            hash,
            disabled: false,
            created_at: ctx.now_ms(),
            revoked_before: 0,
        };
        let doc = account.to_doc().map_err(store_err)?;
        ctx.put(ACCOUNTS, &account_key(u.as_str()), doc).await?;
        tracing::info!(username = %u, "account registered");
        Ok(AuthResponse::Registered {
            username: u.to_string(),
        })
    }

    async fn login(
        &self,
        ctx: &Context,
        username: &str,
        password: &str,
        source: Option<String>,
    ) -> Result<AuthResponse, HandlerError> {
        let source = source.unwrap_or_else(|| ctx.caller().addr.ip().to_string());
        if source.len() > 64 {
            deny!(Denied::BadInput("source must be at most 64 bytes".into()));
        }
        if let Err(wait) = self.sources.charge(&source) {
            deny!(retry_after(wait));
        }
        let u = match Username::parse(username) {
            Ok(u) => u,
            Err(_) => deny!(Denied::InvalidCredentials),
        };
        let p = match Password::parse(password) {
            Ok(p) => p,
            Err(_) => deny!(Denied::InvalidCredentials),
        };
        if let Err(wait) = self.accounts.check(u.as_str()) {
            deny!(retry_after(wait));
        }
        let account = self.account(ctx, &u).await?;
        // An unknown name is verified against the decoy: same work, same time.
        let ok = self
            .hasher
            .verify(&p, account.as_ref().map(|a| a.hash.as_str()))
            .await
            .map_err(hash_err)?;
        let account = match account {
            Some(a) if ok => a,
            _ => {
                let _ = self.accounts.charge(u.as_str());
                deny!(Denied::InvalidCredentials);
            }
        };
        if account.disabled {
            deny!(Denied::AccountDisabled);
        }
        let family = random_id().map_err(token_err)?;
        let tokens = self.issue(ctx, &u, &family, account.revoked_before).await?;
        self.trim_sessions(ctx, &u).await?;
        Ok(AuthResponse::Tokens(tokens))
    }

    /// Writes a new session and refresh token of `family`, stamped after
    /// `not_before`, and returns them.
    async fn issue(
        &self,
        ctx: &Context,
        u: &Username,
        family: &str,
        not_before: u64,
    ) -> Result<Tokens, HandlerError> {
        let session = Token::generate(TokenKind::Session).map_err(token_err)?;
        let refresh = Token::generate(TokenKind::Refresh).map_err(token_err)?;
        let issued_at = ctx.now_ms().max(not_before.saturating_add(1));
        let grant = |is_refresh: bool, partner: Vec<u8>| Grant {
            refresh: is_refresh,
            account: u.to_string(),
            family: family.to_string(),
            issued_at,
            issued_by: ctx.node_name().to_string(),
            partner,
            used: false,
        };
        let s_doc = grant(false, refresh.key()).to_doc().map_err(store_err)?;
        let r_doc = grant(true, session.key()).to_doc().map_err(store_err)?;
        let s_opts = PutOptions {
            ttl: Some(self.config.session_ttl()),
            ack: None,
        };
        let r_opts = PutOptions {
            ttl: Some(self.config.refresh_ttl()),
            ack: None,
        };
        let (s_key, r_key) = (session.key(), refresh.key());
        let (s, r) = tokio::join!(
            ctx.put_with(SESSIONS, &s_key, Some(s_doc), s_opts),
            ctx.put_with(SESSIONS, &r_key, Some(r_doc), r_opts),
        );
        s?;
        r?;
        self.metrics.sessions_issued.inc();
        let now = ctx.now_ms();
        Ok(Tokens {
            username: u.to_string(),
            token: session.text(),
            expires_at: now.saturating_add(self.config.session_ttl_s * 1000),
            refresh_token: refresh.text(),
            refresh_expires_at: now.saturating_add(self.config.refresh_ttl_s * 1000),
        })
    }

    /// The read level of validation on this node: its own copy while it is
    /// in touch with a majority of auth nodes (so it holds every revocation
    /// older than the window); else a `Quorum` read, if it sees a majority
    /// of the auth nodes alive (briefly, while a failed peer is detected);
    /// else it refuses — a node cut off from the majority counts only the
    /// hosts it still sees, so its `Quorum` could be itself — and the caller
    /// moves on to another node.
    pub(crate) fn validation_level(&self, ctx: &Context) -> Result<ReadLevel, HandlerError> {
        if ctx.in_touch(SESSIONS, self.config.local_validation_window()) {
            Ok(ReadLevel::One)
        } else if ctx.sees_majority(SESSIONS) {
            Ok(ReadLevel::Quorum)
        } else {
            Err(HandlerError::Unavailable(format!(
                "{} is out of touch with most auth nodes; it does not validate alone",
                ctx.node_name()
            )))
        }
    }

    /// Whether a grant is revoked by a family or account marker.
    async fn revoked(
        &self,
        ctx: &Context,
        grant: &Grant,
        level: ReadLevel,
    ) -> Result<bool, HandlerError> {
        let (f_key, a_key) = (
            family_marker_key(&grant.family),
            account_marker_key(&grant.account),
        );
        let (family, account) = tokio::join!(
            ctx.get_with(SESSIONS, &f_key, level),
            ctx.get_with(SESSIONS, &a_key, level)
        );
        if family?.is_some() {
            return Ok(true);
        }
        match account? {
            Some(r) => Ok(Marker::account_before(&r.doc).map_err(store_err)? > grant.issued_at),
            None => Ok(false),
        }
    }

    /// The live grant under `token`, if any.
    async fn grant(
        &self,
        ctx: &Context,
        token: &Token,
        level: ReadLevel,
    ) -> Result<Option<(Grant, Option<u64>)>, HandlerError> {
        let refresh = token.kind() == TokenKind::Refresh;
        self.grant_at(ctx, &token.key(), refresh, level).await
    }

    /// The live grant stored under `key` (a refresh token's when `refresh`).
    pub(crate) async fn grant_at(
        &self,
        ctx: &Context,
        key: &[u8],
        refresh: bool,
        level: ReadLevel,
    ) -> Result<Option<(Grant, Option<u64>)>, HandlerError> {
        let key = key.to_vec();
        let mut record = ctx.get_with(SESSIONS, &key, level).await?;
        if record.is_none() && level == ReadLevel::One {
            // A session acknowledged by a majority may not have reached this
            // node yet (a login validated at once elsewhere): a majority read
            // finds it. Only misses pay for it.
            record = ctx.get_with(SESSIONS, &key, ReadLevel::Quorum).await?;
        }
        let Some(record) = record else {
            return Ok(None);
        };
        let Some(grant) = Grant::from_doc(&record.doc).map_err(store_err)? else {
            return Ok(None);
        };
        if grant.refresh != refresh || self.revoked(ctx, &grant, level).await? {
            return Ok(None);
        }
        Ok(Some((grant, record.expires_at_ms)))
    }

    async fn validate(&self, ctx: &Context, text: &str) -> Result<AuthResponse, HandlerError> {
        let token = match Token::parse(TokenKind::Session, text) {
            Ok(t) => t,
            Err(e) => deny!(Denied::BadInput(e.to_string())),
        };
        match self.grant(ctx, &token, self.validation_level(ctx)?).await? {
            None => deny!(Denied::InvalidToken),
            Some((g, expires_at)) => Ok(AuthResponse::Valid(info(&token.key(), g, expires_at))),
        }
    }

    async fn refresh(&self, ctx: &Context, text: &str) -> Result<AuthResponse, HandlerError> {
        let token = match Token::parse(TokenKind::Refresh, text) {
            Ok(t) => t,
            Err(e) => deny!(Denied::BadInput(e.to_string())),
        };
        let Some((grant, expires_at)) = self.grant(ctx, &token, ReadLevel::Quorum).await? else {
            deny!(Denied::InvalidToken);
        };
        // Spent exactly once, cluster-wide, even by two racing callers; the
        // `used` flag written below keeps catching reuse after the lock
        // expires.
        let spent_here = self
            .lock(ctx, &lock_key(b'r', &token.key()), REFRESH_LOCK)
            .await?;
        if grant.used || !spent_here {
            let n = self.revoke_family(ctx, &grant).await?;
            tracing::warn!(username = %grant.account, revoked = n, "refresh token reused; family revoked");
            deny!(Denied::RefreshReused);
        }
        let u = Username::parse(&grant.account)
            .map_err(|e| HandlerError::Unavailable(format!("stored account name: {e}")))?;
        // Spend the old token (kept until it expires, to detect reuse), end
        // its session, then issue the next pair of the same family.
        let spent = Grant {
            used: true,
            ..grant.clone()
        };
        let left = expires_at
            .map(|at| Duration::from_millis(at.saturating_sub(ctx.now_ms()).max(1)))
            .unwrap_or(self.config.refresh_ttl());
        let doc = spent.to_doc().map_err(store_err)?;
        let opts = PutOptions {
            ttl: Some(left),
            ack: None,
        };
        ctx.put_with(SESSIONS, &token.key(), Some(doc), opts)
            .await?;
        ctx.delete(SESSIONS, &grant.partner).await?;
        let not_before = match ctx.get(SESSIONS, &account_marker_key(u.as_str())).await? {
            Some(r) => Marker::account_before(&r.doc).map_err(store_err)?,
            None => 0,
        };
        let tokens = self.issue(ctx, &u, &grant.family, not_before).await?;
        Ok(AuthResponse::Tokens(tokens))
    }

    async fn revoke(&self, ctx: &Context, text: &str) -> Result<AuthResponse, HandlerError> {
        let token = match Token::parse(TokenKind::Session, text) {
            Ok(t) => t,
            Err(e) => deny!(Denied::BadInput(e.to_string())),
        };
        let Some((grant, _)) = self.grant(ctx, &token, ReadLevel::Quorum).await? else {
            return Ok(AuthResponse::Revoked { sessions: 0 });
        };
        let key = token.key();
        let (s, r) = tokio::join!(
            ctx.delete(SESSIONS, &key),
            ctx.delete(SESSIONS, &grant.partner),
        );
        s?;
        r?;
        self.metrics.sessions_revoked.inc();
        Ok(AuthResponse::Revoked { sessions: 1 })
    }

    /// Revokes a whole family (refresh-token reuse): marker, then cleanup.
    async fn revoke_family(&self, ctx: &Context, grant: &Grant) -> Result<u32, HandlerError> {
        let marker = Marker::Family {
            account: grant.account.clone(),
        };
        let opts = PutOptions {
            // Every grant of the family expires within the refresh TTL.
            ttl: Some(self.config.refresh_ttl()),
            ack: None,
        };
        let doc = marker.to_doc().map_err(store_err)?;
        ctx.put_with(SESSIONS, &family_marker_key(&grant.family), Some(doc), opts)
            .await?;
        self.delete_grants(ctx, "family", &grant.family).await
    }

    /// Revokes every session of `u` (optionally also writing `account`,
    /// e.g. with a new hash): account first (so logins from now on are
    /// stamped after the cut), then the marker, then cleanup.
    async fn revoke_account(
        &self,
        ctx: &Context,
        u: &Username,
        account: Option<Account>,
    ) -> Result<u32, HandlerError> {
        let before = ctx.now_ms().saturating_add(ctx.skew_margin_ms());
        let account = match account {
            Some(a) => Some(a),
            None => self.account(ctx, u).await?,
        };
        if let Some(mut a) = account {
            a.revoked_before = a.revoked_before.max(before);
            let doc = a.to_doc().map_err(store_err)?;
            ctx.put(ACCOUNTS, &account_key(u.as_str()), doc).await?;
        }
        let doc = Marker::Account { before }.to_doc().map_err(store_err)?;
        let opts = PutOptions {
            ttl: Some(self.config.refresh_ttl()),
            ack: None,
        };
        ctx.put_with(SESSIONS, &account_marker_key(u.as_str()), Some(doc), opts)
            .await?;
        self.delete_grants(ctx, "account", u.as_str()).await
    }

    /// Deletes the grants whose `field` is `value`; returns the sessions
    /// among them.
    async fn delete_grants(
        &self,
        ctx: &Context,
        field: &str,
        value: &str,
    ) -> Result<u32, HandlerError> {
        let mut sessions = 0u32;
        for _ in 0..REVOKE_PASSES {
            let query = grants_query(field, value, None, REVOKE_PAGE);
            let answer = ctx.query(&query).await?;
            let found = answer.rows.len();
            for row in &answer.rows {
                if let Some(g) = Grant::from_doc(&row.doc).map_err(store_err)? {
                    ctx.delete(SESSIONS, &row.key).await?;
                    if !g.refresh {
                        sessions += 1;
                    }
                }
            }
            if found < REVOKE_PAGE as usize {
                break;
            }
        }
        self.metrics.sessions_revoked.inc_by(u64::from(sessions));
        Ok(sessions)
    }

    /// Revokes the oldest sessions of `u` past `sessions_per_account`.
    async fn trim_sessions(&self, ctx: &Context, u: &Username) -> Result<(), HandlerError> {
        let cap = self.config.sessions_per_account;
        let query = grants_query("account", u.as_str(), Some("session"), cap + 1);
        let answer = ctx.query(&query).await?;
        for row in answer.rows.iter().skip(cap as usize) {
            if let Some(g) = Grant::from_doc(&row.doc).map_err(store_err)? {
                ctx.delete(SESSIONS, &row.key).await?;
                ctx.delete(SESSIONS, &g.partner).await?;
                self.metrics.sessions_revoked.inc();
            }
        }
        Ok(())
    }

    async fn sessions(&self, ctx: &Context, username: &str) -> Result<AuthResponse, HandlerError> {
        let u = match Username::parse(username) {
            Ok(u) => u,
            Err(e) => deny!(bad_name(e)),
        };
        let cap = self.config.sessions_per_account;
        let query = grants_query("account", u.as_str(), Some("session"), cap);
        let answer = ctx.query(&query).await?;
        let mut out = Vec::with_capacity(answer.rows.len());
        for row in answer.rows {
            let Some(g) = Grant::from_doc(&row.doc).map_err(store_err)? else {
                continue;
            };
            if !self.revoked(ctx, &g, ReadLevel::One).await? {
                out.push(info(&row.key, g, row.expires_at_ms));
            }
        }
        Ok(AuthResponse::Sessions {
            sessions: out,
            partial: answer.partial,
        })
    }

    async fn change_password(
        &self,
        ctx: &Context,
        username: &str,
        old: &str,
        new: &str,
    ) -> Result<AuthResponse, HandlerError> {
        let new = match Password::parse(new) {
            Ok(p) => p,
            Err(e) => deny!(bad_name(e)),
        };
        let (Ok(u), Ok(old)) = (Username::parse(username), Password::parse(old)) else {
            deny!(Denied::InvalidCredentials);
        };
        if let Err(wait) = self.accounts.check(u.as_str()) {
            deny!(retry_after(wait));
        }
        let account = self.account(ctx, &u).await?;
        let ok = self
            .hasher
            .verify(&old, account.as_ref().map(|a| a.hash.as_str()))
            .await
            .map_err(hash_err)?;
        let mut account = match account {
            Some(a) if ok => a,
            _ => {
                let _ = self.accounts.charge(u.as_str());
                deny!(Denied::InvalidCredentials);
            }
        };
        account.hash = self.hasher.hash(&new).await.map_err(hash_err)?;
        let revoked = self.revoke_account(ctx, &u, Some(account)).await?;
        tracing::info!(username = %u, revoked, "password changed");
        Ok(AuthResponse::Updated { revoked })
    }

    async fn set_disabled(
        &self,
        ctx: &Context,
        username: &str,
        disabled: bool,
    ) -> Result<AuthResponse, HandlerError> {
        let u = match Username::parse(username) {
            Ok(u) => u,
            Err(e) => deny!(bad_name(e)),
        };
        let Some(mut account) = self.account(ctx, &u).await? else {
            deny!(Denied::NoAccount(u.to_string()));
        };
        account.disabled = disabled;
        let revoked = if disabled {
            self.revoke_account(ctx, &u, Some(account)).await?
        } else {
            let doc = account.to_doc().map_err(store_err)?;
            ctx.put(ACCOUNTS, &account_key(u.as_str()), doc).await?;
            0
        };
        tracing::info!(username = %u, disabled, revoked, "account updated");
        Ok(AuthResponse::Updated { revoked })
    }
}

/// Grants (optionally of one `kind`) whose `field` equals `value`, newest
/// first.
fn grants_query(field: &str, value: &str, kind: Option<&str>, limit: u32) -> Query {
    let mut filter = vec![Expr::cmp(field, CmpOp::Eq, Value::Str(value.into()))];
    if let Some(kind) = kind {
        filter.push(Expr::cmp("kind", CmpOp::Eq, Value::Str(kind.into())));
    }
    Query {
        table: SESSIONS.into(),
        filter: Expr::and(filter),
        order: vec![OrderKey {
            field: "issued_at".into(),
            descending: true,
        }],
        limit,
        after: None,
    }
}

/// The public id of the session stored under `key`: 64 bits of the token's
/// hash — enough to tell sessions apart in a listing, useless as a token.
pub(crate) fn session_id(key: &[u8]) -> String {
    key.iter()
        .skip(1)
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The public view of a session.
fn info(key: &[u8], g: Grant, expires_at: Option<u64>) -> SessionInfo {
    SessionInfo {
        username: g.account,
        session_id: session_id(key),
        family: g.family,
        issued_at: g.issued_at,
        expires_at: expires_at.unwrap_or(u64::MAX),
        issued_by: g.issued_by,
    }
}
