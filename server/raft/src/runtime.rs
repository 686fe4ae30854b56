//! openraft's `AsyncRuntime` on glommio: tasks are `spawn_local`ed on the current executor,
//! timers are glommio timers, and the channels and mutex are the tokio-sync based types of
//! `openraft-rt-tokio`, which wake any executor's tasks and need no tokio runtime.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use glommio::timer::Timer;
use openraft_rt::{AsyncRuntime, OptionalSend};
use openraft_rt_tokio::{TokioMpsc, TokioMutex, TokioOneshot, TokioRuntime, TokioWatch};

/// Locked memory registered per executor for io_uring buffers. glommio's default (10 MiB)
/// does not fit the 8 MiB RLIMIT_MEMLOCK of the machines ketch runs on.
pub const EXECUTOR_IO_MEMORY_BYTES: usize = 1 << 20;

/// Builder for a glommio executor sized to fit a small RLIMIT_MEMLOCK.
pub fn executor_builder(name: &str) -> glommio::LocalExecutorBuilder {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name(name)
        .io_memory(EXECUTOR_IO_MEMORY_BYTES)
}

/// openraft's runtime on a glommio `LocalExecutor`. Every openraft task of one `Raft` runs on
/// the executor that created it.
pub struct GlommioRuntime {
    executor: glommio::LocalExecutor,
}

impl fmt::Debug for GlommioRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlommioRuntime").finish()
    }
}

/// A spawned task ended without a result: glommio cancelled it (its executor stopped).
#[derive(Debug, Clone, thiserror::Error)]
#[error("glommio task was cancelled before it completed")]
pub struct GlommioJoinError;

/// A future that did not complete before its deadline.
#[derive(Debug, Clone, thiserror::Error)]
#[error("deadline elapsed")]
pub struct GlommioTimeoutError;

/// Join handle of a detached glommio task: dropping it does not cancel the task (openraft
/// relies on tokio's detach-on-drop semantics).
pub struct GlommioJoinHandle<T>(glommio::task::JoinHandle<T>);

impl<T> Future for GlommioJoinHandle<T> {
    type Output = Result<T, GlommioJoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.ok_or(GlommioJoinError))
    }
}

/// `sleep` / `sleep_until`: a glommio timer whose output is `()`.
pub struct GlommioSleep(Timer);

impl Future for GlommioSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// A future raced against a glommio timer; the future is polled first, so a future that is
/// ready at its deadline wins.
pub struct GlommioTimeout<F> {
    future: Pin<Box<F>>,
    timer: Timer,
}

impl<R, F: Future<Output = R>> Future for GlommioTimeout<F> {
    type Output = Result<R, GlommioTimeoutError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(v) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut self.timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(Err(GlommioTimeoutError)),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn timer_until(deadline: Instant) -> Timer {
    Timer::new(deadline.saturating_duration_since(Instant::now()))
}

impl AsyncRuntime for GlommioRuntime {
    type JoinError = GlommioJoinError;
    type JoinHandle<T: OptionalSend + 'static> = GlommioJoinHandle<T>;
    type Sleep = GlommioSleep;
    type Instant = Instant;
    type TimeoutError = GlommioTimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = GlommioTimeout<T>;
    // rand's thread-local generator, obtained through the tokio runtime's constructor,
    // which touches no tokio runtime.
    type ThreadLocalRng = <TokioRuntime as AsyncRuntime>::ThreadLocalRng;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        GlommioJoinHandle(glommio::spawn_local(future).detach())
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        GlommioSleep(Timer::new(duration))
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        GlommioSleep(timer_until(deadline))
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        GlommioTimeout {
            future: Box::pin(future),
            timer: Timer::new(duration),
        }
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        GlommioTimeout {
            future: Box::pin(future),
            timer: timer_until(deadline),
        }
    }

    fn is_panic(_join_error: &Self::JoinError) -> bool {
        // A panicking glommio task unwinds through the executor: no join error is a panic.
        false
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        TokioRuntime::thread_rng()
    }

    type Mpsc = TokioMpsc;
    type Watch = TokioWatch;
    type Oneshot = TokioOneshot;
    type Mutex<T: OptionalSend + 'static> = TokioMutex<T>;

    fn new(_threads: usize) -> Self {
        let executor = executor_builder("openraft-rt")
            .make()
            .expect("glommio executor (check `ulimit -l`: at least 2 MiB of locked memory)");
        GlommioRuntime { executor }
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.executor.run(future)
    }
}
