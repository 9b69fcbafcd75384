//! Password hashing with argon2id, off the async runtime, bounded.
//!
//! Owns: [`HashParams`] (documented, configurable), [`Hasher`] (hash and
//! verify on its own `parallel` threads, at a lower OS priority (nice 10 on
//! Linux) and behind a bounded queue, so a login storm can neither starve
//! validations sharing the node of CPU nor hold their permits), and the
//! decoy verification that makes an unknown username cost what a wrong
//! password costs.
//! Does not own: rate limits (`limits`) or what a failed login answers.
//!
//! Defaults follow OWASP's argon2id recommendation (m = 19 MiB, t = 2, p = 1):
//! about 20-40 ms of one core per hash on current x86. Verification is the
//! `argon2` crate's, which compares the computed and stored hashes in constant
//! time. The stored form is the PHC string, so parameters can be raised later:
//! old hashes keep verifying with the parameters they carry.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};

use crate::names::Password;

/// argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashParams {
    /// Memory per hash, KiB (OWASP: 19456).
    pub memory_kib: u32,
    /// Passes over the memory (OWASP: 2).
    pub iterations: u32,
    /// Lanes (OWASP: 1).
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Why hashing failed (a bug or a bad configuration, never bad user input).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// Parameters argon2 refuses.
    #[error("invalid argon2id parameters: {0}")]
    Params(String),
    /// A stored hash that does not parse.
    #[error("stored password hash is damaged: {0}")]
    Stored(String),
    /// The blocking worker failed.
    #[error("password hashing worker failed: {0}")]
    Worker(String),
    /// The OS random source failed.
    #[error("the operating system's random source failed: {0}")]
    Random(String),
    /// Every hashing slot is busy and `waiting` hashes already wait: the
    /// request is refused at once rather than queued without bound (a login
    /// storm must not hold the service's permits that validations need).
    #[error("password hashing is at capacity on this node ({waiting} waiting); retry shortly")]
    Busy { waiting: usize },
}

impl HashParams {
    /// Checks the parameters against argon2's bounds (and a floor: below
    /// 8 MiB or 1 pass the hash protects little).
    pub fn validate(&self) -> Result<(), HashError> {
        if self.memory_kib < 8 * 1024 || self.iterations < 1 {
            return Err(HashError::Params(
                "memory_kib must be at least 8192 and iterations at least 1".into(),
            ));
        }
        self.argon2().map(|_| ())
    }

    fn argon2(&self) -> Result<Argon2<'static>, HashError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| HashError::Params(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// Work for a hashing thread.
type Job = Box<dyn FnOnce() + Send>;

/// Hashes and verifies passwords on `parallel` threads of its own, with at
/// most `queue` more waiting.
#[derive(Clone)]
pub struct Hasher {
    params: HashParams,
    jobs: SyncSender<Job>,
    queue: usize,
    /// A hash of a random password with the current parameters: unknown
    /// usernames are verified against it so they take as long as known ones.
    decoy: Arc<str>,
}

impl Hasher {
    /// A hasher with `params`, running at most `parallel` hashes at once and
    /// letting at most `queue` more wait (beyond: [`HashError::Busy`]).
    pub fn new(params: HashParams, parallel: usize, queue: usize) -> Result<Self, HashError> {
        params.validate()?;
        let mut random = [0u8; 24];
        getrandom::fill(&mut random).map_err(|e| HashError::Random(e.to_string()))?;
        let decoy = hash_blocking(&params, &random)?;
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..parallel.max(1) {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("geoul-argon2-{i}"))
                .spawn(move || hashing_thread(&rx))
                .map_err(|e| HashError::Worker(format!("starting a hashing thread: {e}")))?;
        }
        Ok(Self {
            params,
            jobs,
            queue,
            decoy: decoy.into(),
        })
    }

    /// The parameters new hashes use.
    pub fn params(&self) -> HashParams {
        self.params
    }

    /// The PHC string of `password` with a fresh random salt.
    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let params = self.params;
        let bytes = password.as_bytes().to_vec();
        self.blocking(move || hash_blocking(&params, &bytes)).await
    }

    /// Whether `password` matches `stored` (a PHC string); `None` verifies
    /// against the decoy and answers `false`, in the same time.
    pub async fn verify(
        &self,
        password: &Password,
        stored: Option<&str>,
    ) -> Result<bool, HashError> {
        let (stored, real) = match stored {
            Some(s) => (s.to_string(), true),
            None => (self.decoy.to_string(), false),
        };
        let bytes = password.as_bytes().to_vec();
        let matched = self
            .blocking(move || {
                let hash =
                    PasswordHash::new(&stored).map_err(|e| HashError::Stored(e.to_string()))?;
                // Argon2::default() reads the parameters from the PHC string.
                Ok(Argon2::default().verify_password(&bytes, &hash).is_ok())
            })
            .await?;
        Ok(real && matched)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The caller may have gone (deadline): nothing to tell then.
            let _ = tx.send(work());
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(HashError::Busy {
                    waiting: self.queue,
                })
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(HashError::Worker("the hashing threads stopped".into()))
            }
        }
        rx.await
            .map_err(|_| HashError::Worker("a hashing thread failed".into()))?
    }
}

/// One hashing thread: lowers its own scheduling priority, then runs jobs
/// until every `Hasher` handle is gone.
fn hashing_thread(jobs: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|p| p.into_inner());
            rx.recv()
        };
        match job {
            // A panicking hash (a bug) drops its reply sender: the caller
            // gets `Worker`, and this thread keeps serving.
            Ok(job) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}

/// Nice 10 for the calling thread: hashing is throughput work, and the
/// node's other threads (validations, replication, consensus heartbeats)
/// must win the CPU when both want it. Best effort.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority has no memory effects; on Linux, PRIO_PROCESS
        // with who = 0 applies to the calling thread only.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
        if rc != 0 {
            tracing::debug!("could not lower the hashing thread's priority");
        }
    }
}

fn hash_blocking(params: &HashParams, password: &[u8]) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| HashError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError::Params(e.to_string()))?;
    let hash = params
        .argon2()?
        .hash_password(password, &salt)
        .map_err(|e| HashError::Params(e.to_string()))?;
    Ok(hash.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small parameters: tests check behaviour, not cost.
    fn cheap() -> HashParams {
        HashParams {
            memory_kib: 8 * 1024,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn pw(s: &str) -> Password {
        Password::parse(s).expect("valid password")
    }

    #[tokio::test]
    async fn hashes_verify_and_carry_their_parameters() {
        let h = Hasher::new(cheap(), 2, 64).expect("hasher");
        let stored = h.hash(&pw("correct horse")).await.expect("hash");
        assert!(
            stored.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"),
            "{stored}"
        );
        assert!(h
            .verify(&pw("correct horse"), Some(&stored))
            .await
            .expect("verify"));
        assert!(!h
            .verify(&pw("correct horsE"), Some(&stored))
            .await
            .expect("verify"));
        // Salted: the same password hashes differently.
        let again = h.hash(&pw("correct horse")).await.expect("hash");
        assert_ne!(stored, again);
        // A hasher with other parameters still verifies the old hash.
        let stronger = Hasher::new(
            HashParams {
                memory_kib: 9 * 1024,
                ..cheap()
            },
            1,
            64,
        )
        .expect("hasher");
        assert!(stronger
            .verify(&pw("correct horse"), Some(&stored))
            .await
            .expect("verify"));
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies_even_with_the_decoy_password() {
        let h = Hasher::new(cheap(), 1, 64).expect("hasher");
        assert!(!h
            .verify(&pw("anything at all"), None)
            .await
            .expect("verify"));
    }

    #[tokio::test]
    async fn damaged_hashes_and_bad_parameters_are_errors_not_panics() {
        let h = Hasher::new(cheap(), 1, 64).expect("hasher");
        let err = h.verify(&pw("whatever123"), Some("not a PHC string")).await;
        assert!(matches!(err, Err(HashError::Stored(_))), "{err:?}");
        let weak = HashParams {
            memory_kib: 64,
            ..cheap()
        };
        assert!(Hasher::new(weak, 1, 64).is_err());
        assert!(HashParams::default().validate().is_ok());
    }

    /// Six hashes submitted at once (`join!` polls each once, in order,
    /// before waiting on any: what a burst of concurrent logins does).
    async fn burst(h: &Hasher, p: &[Password]) -> Vec<Result<String, HashError>> {
        let (a, b, c, d, e, f) = tokio::join!(
            h.hash(&p[0]),
            h.hash(&p[1]),
            h.hash(&p[2]),
            h.hash(&p[3]),
            h.hash(&p[4]),
            h.hash(&p[5]),
        );
        vec![a, b, c, d, e, f]
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_frees_its_place() {
        // One thread, one waiting place: of six submitted at once at most
        // two or three are taken (one runs, one waits, one more if the thread
        // took the first meanwhile); the rest are refused without waiting.
        let h = Hasher::new(cheap(), 1, 1).expect("hasher");
        let passwords: Vec<Password> = (0..6).map(|i| pw(&format!("password {i}"))).collect();
        let results = burst(&h, &passwords).await;
        let busy = results
            .iter()
            .filter(|r| matches!(r, Err(HashError::Busy { waiting: 1 })))
            .count();
        assert!(busy >= 3, "{results:?}");
        assert!(results
            .iter()
            .all(|r| r.is_ok() || matches!(r, Err(HashError::Busy { .. }))));
        // Places are given back: the next burst is served again.
        let results = burst(&h, &passwords).await;
        assert!(results.iter().any(|r| r.is_ok()), "{results:?}");
    }
}
