//! Timing a crash: every survivor is polled on its own thread until it reports
//! the killed node down; the time of the last survivor is the detection time.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use super::Ctx;

/// Bound on the time from kill -9 to "down" on every survivor.
pub const DETECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll interval of each survivor.
const DETECT_POLL: Duration = Duration::from_millis(5);

/// When the first and the last survivor reported the node down, after the kill.
#[derive(Clone, Copy, Debug)]
pub struct Detected {
    pub first: Duration,
    pub all: Duration,
}

/// Runs `make_probe(survivor)` on one thread per survivor and polls the probe
/// every ~5 ms until it returns `Ok(())` (down) or [`DETECT_TIMEOUT`] after
/// `t0` passes. A probe returns `Err(what it saw)` while the node is not down.
pub fn time_until_all<S, P>(
    ctx: &Ctx,
    t0: Instant,
    survivors: &[(String, S)],
    make_probe: impl Fn(&S) -> P + Sync,
) -> anyhow::Result<Detected>
where
    S: Sync,
    P: FnMut() -> Result<(), String>,
{
    let deadline = t0 + DETECT_TIMEOUT;
    let seen: Vec<Instant> = std::thread::scope(|s| {
        let pollers: Vec<_> = (survivors.iter())
            .map(|(name, survivor)| {
                let make_probe = &make_probe;
                s.spawn(move || {
                    poll_until_down(ctx, deadline, make_probe(survivor))
                        .with_context(|| format!("survivor {name}"))
                })
            })
            .collect();
        (pollers.into_iter())
            .map(|p| p.join().unwrap_or_else(|_| Err(anyhow!("poller panicked"))))
            .collect::<anyhow::Result<Vec<Instant>>>()
    })?;
    let since_kill = |t: Option<&Instant>| t.map_or(Duration::ZERO, |t| *t - t0);
    Ok(Detected {
        first: since_kill(seen.iter().min()),
        all: since_kill(seen.iter().max()),
    })
}

/// Returns when the answer saying "down" arrived.
fn poll_until_down(
    ctx: &Ctx,
    deadline: Instant,
    mut probe: impl FnMut() -> Result<(), String>,
) -> anyhow::Result<Instant> {
    loop {
        ctx.check_stop()?;
        let last = match probe() {
            Ok(()) => return Ok(Instant::now()),
            Err(last) => last,
        };
        if Instant::now() >= deadline {
            bail!(
                "did not report the node down within {}s (last: {last})",
                DETECT_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(DETECT_POLL);
    }
}
