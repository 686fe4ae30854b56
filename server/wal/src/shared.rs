//! State shared by the `Wal` handles and the writer task (one executor, no locks).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fs::File;
use std::future::poll_fn;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Poll, Waker};

use crate::error::WalError;
use crate::metrics::WalMetrics;
use crate::queue::{AppendQueue, DurableCallback};

/// One segment of the log, oldest first in [`Shared::segments`]; the last is the active one.
#[derive(Debug, Clone)]
pub(crate) struct SegmentInfo {
    pub path: PathBuf,
    /// Largest record index in the segment (`None` while it holds no record).
    pub max_index: Option<u64>,
}

/// Wakes tasks waiting for a condition. Holds at most one waker per waiting task (the
/// writer, and callers of `append_durable` waiting for queue room).
#[derive(Default)]
pub(crate) struct Notify {
    wakers: RefCell<Vec<Waker>>,
}

impl Notify {
    pub(crate) fn notify_all(&self) {
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        wakers.into_iter().for_each(Waker::wake);
    }

    pub(crate) async fn wait_until(&self, cond: impl Fn() -> bool) {
        poll_fn(|cx| {
            if cond() {
                return Poll::Ready(());
            }
            let mut w = self.wakers.borrow_mut();
            if !w.iter().any(|x| x.will_wake(cx.waker())) {
                w.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

pub(crate) struct Shared {
    pub dir: PathBuf,
    pub segment_size_bytes: u64,
    pub max_batch_bytes: usize,
    pub queue: RefCell<AppendQueue>,
    /// Callbacks of the batch being written, completed after its fdatasync.
    pub inflight: RefCell<VecDeque<DurableCallback>>,
    pub closing: Cell<bool>,
    pub failure: RefCell<Option<WalError>>,
    pub segments: RefCell<VecDeque<SegmentInfo>>,
    pub metrics: RefCell<WalMetrics>,
    pub writer_wake: Notify,
    pub room_wake: Notify,
    /// flock on `<dir>/LOCK`, released when the last handle and the writer are gone.
    pub _lock: nix::fcntl::Flock<File>,
}

impl Shared {
    /// Why a new append must be refused, if it must.
    pub(crate) fn refusal(&self) -> Option<WalError> {
        if let Some(e) = &*self.failure.borrow() {
            return Some(WalError::Failed(Arc::new(e.clone())));
        }
        self.closing.get().then_some(WalError::Closed)
    }

    /// Stops accepting work after `err` and fails every waiter: the in-flight batch with
    /// `err` itself, queued appends with `Failed`.
    pub(crate) fn fail_all(&self, err: WalError) {
        if self.failure.borrow().is_none() {
            *self.failure.borrow_mut() = Some(err.clone());
        }
        let inflight: Vec<_> = self.inflight.borrow_mut().drain(..).collect();
        let queued = self.queue.borrow_mut().drain_callbacks();
        for done in inflight {
            done(Err(err.clone()));
        }
        let failed = WalError::Failed(Arc::new(err));
        for done in queued {
            done(Err(failed.clone()));
        }
        self.room_wake.notify_all();
    }

    /// Completes the in-flight batch's callbacks, in append order, after its sync.
    pub(crate) fn complete_inflight_durable(&self) {
        let inflight: Vec<_> = self.inflight.borrow_mut().drain(..).collect();
        for done in inflight {
            done(Ok(()));
        }
    }
}
