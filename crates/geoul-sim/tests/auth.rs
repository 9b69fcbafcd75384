//! The auth service in simulation (issue 7): under crashes, partitions and
//! clock skew within the margin, no revoked session validates anywhere
//! after its revocation was acknowledged plus the documented bound, no
//! session validates after it expired, and no server ticket is redeemed
//! twice — also when two nodes race to redeem it across a partition.

use std::time::Duration;

use geoul_auth::{AuthRequest, AuthResponse, Denied, Tokens, AUTH};
use geoul_client::wire::{ApiRequest, ApiResponse, Call};
use geoul_sim::cluster::{SimCluster, SimOptions};
use geoul_sim::{check_seed_share, SimServices, AUTH_WINDOW_MS};
use geoul_store::Durability;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEEDS: u64 = 50;
/// Anti-entropy period of the simulation (`SimOptions::default`).
const AE_PERIOD_MS: u64 = 500;
/// The documented bound: the validation window plus one anti-entropy period.
const BOUND_MS: u64 = AUTH_WINDOW_MS + AE_PERIOD_MS;
const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];

fn call(request: &AuthRequest) -> Result<ApiRequest, String> {
    Ok(ApiRequest::Call(Call {
        service: AUTH.into(),
        key: None,
        payload: postcard::to_stdvec(request).map_err(|e| e.to_string())?,
        timeout_ms: 3_000,
        idempotency_key: None,
        session: Default::default(),
        json: false,
    }))
}

fn decode(answer: ApiResponse) -> Result<AuthResponse, String> {
    match answer {
        ApiResponse::Reply(r) => postcard::from_bytes(&r.payload).map_err(|e| e.to_string()),
        other => Err(format!("{other:?}")),
    }
}

/// `request` served by `node`, sent by a client on the same host (so a
/// partition does not hide what a cut-off node would answer).
fn ask(c: &mut SimCluster, node: &str, request: &AuthRequest) -> Result<AuthResponse, String> {
    decode(c.call_api(node, node, call(request)?)?)
}

/// `ask`, retried on failures (a cluster settling, a node that is behind)
/// for at most `patience`.
fn ask_until_answered(
    c: &mut SimCluster,
    node: &str,
    request: &AuthRequest,
    patience: Duration,
) -> Result<AuthResponse, String> {
    let until = c.elapsed() + patience;
    loop {
        match ask(c, node, request) {
            Ok(r) => return Ok(r),
            Err(e) if c.elapsed() >= until => return Err(format!("{request:?} on {node}: {e}")),
            Err(_) => c.run_for(Duration::from_millis(200))?,
        }
    }
}

/// Simulated wall time, Unix ms (as an unskewed node's clock reads it).
fn wall_ms(c: &SimCluster) -> u64 {
    geoul_sim::clock::SIM_EPOCH_MS + u64::try_from(c.elapsed().as_millis()).unwrap_or(u64::MAX)
}

struct Revoked {
    token: String,
    acked_at_ms: u64,
}

/// Checks every running node: revoked sessions past the bound and expired
/// sessions must not validate.
fn check(
    c: &mut SimCluster,
    revoked: &[Revoked],
    live: &[Tokens],
    must_answer: &[&str],
) -> Result<(), String> {
    for node in c.running() {
        for r in revoked {
            let now = wall_ms(c);
            let request = AuthRequest::Validate {
                token: r.token.clone(),
            };
            if let Ok(AuthResponse::Valid(_)) = ask(c, &node, &request) {
                if now > r.acked_at_ms + BOUND_MS {
                    return Err(format!(
                        "{node} validated a session revoked {} ms earlier (bound {BOUND_MS} ms)",
                        now - r.acked_at_ms
                    ));
                }
            }
        }
        for t in live {
            let request = AuthRequest::Validate {
                token: t.token.clone(),
            };
            let asked_at = wall_ms(c);
            let answer = ask(c, &node, &request);
            if let Ok(AuthResponse::Valid(_)) = answer {
                if asked_at > t.expires_at {
                    return Err(format!(
                        "{node} validated a session {} ms after it expired",
                        asked_at - t.expires_at
                    ));
                }
            } else if must_answer.contains(&node.as_str()) && asked_at + 1000 < t.expires_at {
                // The check is only worth something if nodes that can answer do.
                return Err(format!(
                    "{node} did not validate a live session: {answer:?}"
                ));
            }
        }
    }
    Ok(())
}

fn scenario(seed: u64) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let options = SimOptions {
        nodes: 3,
        kv_durability: Durability::Disk,
        // One clock ahead and one behind: 190 ms apart, within the 200 ms
        // margin the nodes allow between any two clocks.
        clock_skews: vec![(1, 100), (2, -90)],
        services: SimServices {
            auth: true,
            ..SimServices::default()
        },
        ..SimOptions::default()
    };
    let mut c = SimCluster::new(seed, options);
    c.run_until(Duration::from_secs(20), "converge", SimCluster::converged)?;
    c.run_until(Duration::from_secs(20), "sync", SimCluster::synced)?;
    let patience = Duration::from_secs(15);
    // Accounts and sessions, through random nodes.
    let mut sessions = Vec::new();
    for i in 0..3 {
        let node = NODES[rng.random_range(0..3)];
        let r = AuthRequest::Register {
            username: format!("player-{i}"),
            password: format!("password-{i}-long"),
        };
        match ask_until_answered(&mut c, node, &r, patience)? {
            AuthResponse::Registered { .. } => {}
            // An earlier attempt timed out after it took effect (register is
            // not idempotent; its outcome was unknown): the name is ours, as
            // the logins with its password below show.
            AuthResponse::Denied(Denied::UsernameTaken(_)) => {}
            other => return Err(format!("register {i}: {other:?}")),
        }
        for _ in 0..2 {
            let node = NODES[rng.random_range(0..3)];
            let r = AuthRequest::Login {
                username: format!("player-{i}"),
                password: format!("password-{i}-long"),
                source: None,
            };
            match ask_until_answered(&mut c, node, &r, patience)? {
                AuthResponse::Tokens(t) => sessions.push(t),
                other => return Err(format!("login {i}: {other:?}")),
            }
        }
    }
    // Tickets: issued now, redeemed later by two nodes at once.
    let mut tickets = Vec::new();
    for t in sessions.iter().take(3) {
        let r = AuthRequest::IssueTicket {
            token: t.token.clone(),
            target_server: "game-1".into(),
        };
        match ask_until_answered(&mut c, NODES[rng.random_range(0..3)], &r, patience)? {
            AuthResponse::Ticket { ticket, .. } => tickets.push(ticket),
            other => return Err(format!("issue ticket: {other:?}")),
        }
    }
    // Faults: one node cut off from the others, then revocations through the
    // majority, then a crash and restart of another node.
    let cut = NODES[rng.random_range(0..3)];
    let rest: Vec<&str> = NODES.iter().copied().filter(|n| *n != cut).collect();
    c.partition(&[cut], &rest);
    let mut revoked = Vec::new();
    for t in sessions.iter().step_by(2) {
        let r = AuthRequest::Revoke {
            token: t.token.clone(),
        };
        let node = rest[rng.random_range(0..rest.len())];
        match ask_until_answered(&mut c, node, &r, patience)? {
            AuthResponse::Revoked { sessions: 1 } => revoked.push(Revoked {
                token: t.token.clone(),
                acked_at_ms: wall_ms(&c),
            }),
            other => return Err(format!("revoke: {other:?}")),
        }
    }
    // Two servers race to redeem each ticket, one on each side.
    let mut redeemed = vec![0usize; tickets.len()];
    for (i, ticket) in tickets.iter().enumerate() {
        let r = AuthRequest::RedeemTicket {
            ticket: ticket.clone(),
            server: "game-1".into(),
        };
        let a = c.submit_api(cut, cut, call(&r)?)?;
        let b = c.submit_api(rest[1], rest[1], call(&r)?)?;
        for rx in [a, b] {
            if let Ok(AuthResponse::Redeemed { .. }) = c.wait_reply(rx).and_then(decode) {
                redeemed[i] += 1;
            }
        }
    }
    // While cut off and after the bound, the cut node must not validate them.
    c.run_for(Duration::from_millis(BOUND_MS))?;
    let live: Vec<Tokens> = sessions.iter().skip(1).step_by(2).cloned().collect();
    check(&mut c, &revoked, &live, &[]).map_err(|e| format!("{e} ({cut} cut off)"))?;
    let crashed = rest[rng.random_range(0..rest.len())];
    c.crash(crashed);
    c.heal(&[cut], &rest);
    c.run_for(Duration::from_secs(1))?;
    check(&mut c, &revoked, &live, &[])?;
    c.restart(crashed);
    c.run_until(
        Duration::from_secs(30),
        "sync after restart",
        SimCluster::synced,
    )?;
    check(&mut c, &revoked, &live, &NODES)?;
    // Every ticket again, now that all are back: none redeems a second time.
    for (i, ticket) in tickets.iter().enumerate() {
        let r = AuthRequest::RedeemTicket {
            ticket: ticket.clone(),
            server: "game-1".into(),
        };
        if let Ok(AuthResponse::Redeemed { .. }) = ask(&mut c, NODES[i % 3], &r) {
            redeemed[i] += 1;
        }
    }
    if let Some(n) = redeemed.iter().find(|n| **n > 1) {
        return Err(format!("a ticket was redeemed {n} times: {redeemed:?}"));
    }
    // After the sessions' lifetime (and the skew margin) none validates
    // anywhere.
    let last_expiry = sessions.iter().map(|t| t.expires_at).max().unwrap_or(0);
    let wait = (last_expiry + 1_000).saturating_sub(wall_ms(&c));
    c.run_for(Duration::from_millis(wait))?;
    check(&mut c, &revoked, &live, &[])
}

// One scenario over SEEDS seeds, split in two so both cores run it.
//
// The final check also asserts availability: every node validates every live
// session once the partition healed and the crashed node resynced. It found
// that a peer's dial backoff (grown to ~10 s while it was away) outlived its
// return; the failure detector's word that it is alive now ends the backoff.
#[test]
fn revoked_and_expired_sessions_never_validate_and_tickets_redeem_once_odd_seeds() {
    check_seed_share("auth_revocation", SEEDS, (1, 2), scenario);
}

#[test]
fn revoked_and_expired_sessions_never_validate_and_tickets_redeem_once_even_seeds() {
    check_seed_share("auth_revocation", SEEDS, (0, 2), scenario);
}
