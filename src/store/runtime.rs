//! openraft's async runtime: tokio, with the one random source openraft draws from (election timeouts, tick
//! jitter) made seedable, so that a simulation replays the same elections for the same seed.
//!
//! In production each draw comes from a generator seeded by the operating system. A simulation calls
//! `seed_elections` on the thread it runs on (every simulated host shares that thread); from then on, draws on
//! that thread follow the seed.

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use openraft::OptionalSend;
use openraft_rt_tokio::TokioRuntime;
use rand_openraft::rngs::SmallRng;
use rand_openraft::SeedableRng;

thread_local! {
    /// The seeded source of this thread, when a simulation installed one.
    static SEEDED: RefCell<Option<SmallRng>> = const { RefCell::new(None) };
}

/// Makes openraft's random draws on this thread follow `seed` (None: back to the operating system's entropy).
pub fn seed_elections(seed: Option<u64>) {
    SEEDED.with(|s| *s.borrow_mut() = seed.map(SmallRng::seed_from_u64));
}

/// Tokio, with seedable randomness.
#[derive(Debug)]
pub struct Runtime(TokioRuntime);

impl openraft::AsyncRuntime for Runtime {
    type JoinError = <TokioRuntime as openraft::AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <TokioRuntime as openraft::AsyncRuntime>::JoinHandle<T>;
    type Sleep = <TokioRuntime as openraft::AsyncRuntime>::Sleep;
    type Instant = <TokioRuntime as openraft::AsyncRuntime>::Instant;
    type TimeoutError = <TokioRuntime as openraft::AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = <TokioRuntime as openraft::AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = SmallRng;
    type Mpsc = <TokioRuntime as openraft::AsyncRuntime>::Mpsc;
    type Watch = <TokioRuntime as openraft::AsyncRuntime>::Watch;
    type Oneshot = <TokioRuntime as openraft::AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <TokioRuntime as openraft::AsyncRuntime>::Mutex<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        TokioRuntime::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        TokioRuntime::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        TokioRuntime::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(duration: Duration, future: F) -> Self::Timeout<R, F> {
        TokioRuntime::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(deadline: Self::Instant, future: F) -> Self::Timeout<R, F> {
        TokioRuntime::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        TokioRuntime::is_panic(join_error)
    }

    fn thread_rng() -> SmallRng {
        SEEDED.with(|s| match s.borrow_mut().as_mut() {
            Some(seeded) => SmallRng::from_rng(seeded),
            None => SmallRng::seed_from_u64(rand::random()),
        })
    }

    fn new(threads: usize) -> Self {
        Runtime(TokioRuntime::new(threads))
    }

    fn block_on<F: Future<Output = T>, T>(&mut self, future: F) -> T {
        self.0.block_on(future)
    }
}
