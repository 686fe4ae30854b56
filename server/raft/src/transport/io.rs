//! glommio glue for hyper: an I/O adapter over a buffered glommio `TcpStream`, and an
//! executor that runs hyper's connection tasks on the current glommio executor, so a
//! connection never crosses cores. Used by the peer port here and by the server binary's
//! client port (its `rt.rs` re-exports these).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_lite::io::{AsyncBufRead, AsyncWrite};

/// Most bytes a connection holds back before writing them out (see [`HyperIo`]). A write
/// that would pass it first sends what is held; a write this large goes out as it is.
pub const WRITE_COALESCE_MAX_BYTES: usize = 64 * 1024;

/// Most times one flush lets the executor's other tasks run first (see [`HyperIo`]).
pub const FLUSH_YIELDS_MAX: u32 = 4;

/// hyper's `Read`/`Write` over a buffered glommio stream. Reading copies out of glommio's
/// receive buffer, so hyper's uninitialised read buffer is only filled with `put_slice`.
///
/// Writes are coalesced across the tasks of one executor turn. hyper flushes a connection
/// as soon as one HTTP/2 stream's response is ready, and each flush was one `send` to the
/// kernel: under load one 83-byte answer per system call (measured under `range`), though
/// more answers were ready on the same connection a moment later. So writes are held in a
/// buffer, and a flush that finds bytes held yields instead, again while they keep growing
/// (the connection's task goes to the back of the executor's queue): the tasks queued finish their
/// answers first, and a later flush sends them all in one system call (see
/// results/2026-12-08-compare-4a3802d/NOTES.md).
pub struct HyperIo<S> {
    io: S,
    /// Bytes written by hyper and not yet sent; `held[sent..]` is still to go.
    held: Vec<u8>,
    sent: usize,
    /// Times the current flush yielded, and how many bytes were held at the last yield.
    yields: u32,
    held_at_yield: usize,
}

impl<S> HyperIo<S> {
    pub fn new(io: S) -> HyperIo<S> {
        HyperIo {
            io,
            held: Vec::new(),
            sent: 0,
            yields: 0,
            held_at_yield: 0,
        }
    }
}

impl<S: AsyncBufRead + Unpin> hyper::rt::Read for HyperIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let available = ready!(Pin::new(&mut self.io).poll_fill_buf(cx))?;
        let n = available.len().min(buf.remaining());
        buf.put_slice(&available[..n]);
        Pin::new(&mut self.io).consume(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> HyperIo<S> {
    /// Sends every held byte.
    fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.held.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.held[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.held.clear();
        self.sent = 0;
        self.yields = 0;
        self.held_at_yield = 0;
        if self.held.capacity() > WRITE_COALESCE_MAX_BYTES {
            // A burst grew the buffer: give the memory back while the connection is idle.
            self.held = Vec::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> hyper::rt::Write for HyperIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.held.len() + buf.len() > WRITE_COALESCE_MAX_BYTES {
            ready!(this.poll_send_held(cx))?;
            if buf.len() >= WRITE_COALESCE_MAX_BYTES {
                return Pin::new(&mut this.io).poll_write(cx, buf);
            }
        }
        this.held.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // Yield while the held bytes grew since the last yield (other tasks are still adding
        // answers), at most `FLUSH_YIELDS_MAX` times.
        let grew = this.held.len() > this.held_at_yield.max(this.sent);
        if grew && this.yields < FLUSH_YIELDS_MAX {
            this.yields += 1;
            this.held_at_yield = this.held.len();
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(this.poll_send_held(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_send_held(cx))?;
        Pin::new(&mut this.io).poll_close(cx)
    }
}

/// hyper's executor: spawns on the current glommio executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
    F::Output: 'static,
{
    fn execute(&self, fut: F) {
        glommio::spawn_local(fut).detach();
    }
}

#[cfg(test)]
mod tests {
    //! `HyperIo`'s write coalescing, driven by hand against an in-memory writer that
    //! records each write the adapter makes (one per system call on a real socket).

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use hyper::rt::Write;

    use super::*;

    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        closed: bool,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().writes.push(b.to_vec());
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().closed = true;
            Poll::Ready(Ok(()))
        }
    }

    #[derive(Default)]
    struct CountWakes(AtomicUsize);

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn write(io: &mut HyperIo<Recorder>, cx: &mut Context<'_>, b: &[u8]) {
        assert!(matches!(Pin::new(io).poll_write(cx, b), Poll::Ready(Ok(n)) if n == b.len()));
    }

    #[test]
    fn a_flush_yields_while_answers_keep_arriving_then_sends_them_in_one_write() {
        let wakes = Arc::new(CountWakes::default());
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut io = HyperIo::new(Recorder::default());

        write(&mut io, &mut cx, b"one ");
        assert!(
            Pin::new(&mut io).poll_flush(&mut cx).is_pending(),
            "first flush yields"
        );
        assert_eq!(
            wakes.0.load(Ordering::Relaxed),
            1,
            "and wakes its task to come back"
        );
        write(&mut io, &mut cx, b"two ");
        assert!(
            Pin::new(&mut io).poll_flush(&mut cx).is_pending(),
            "more came: yield again"
        );
        assert!(io.io.writes.is_empty(), "nothing sent while yielding");
        assert!(
            Pin::new(&mut io).poll_flush(&mut cx).is_ready(),
            "nothing new: send"
        );
        assert_eq!(io.io.writes, vec![b"one two ".to_vec()]);

        // The next flush starts over: one yield, then one write.
        write(&mut io, &mut cx, b"three");
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert_eq!(io.io.writes.len(), 2);
        assert!(
            Pin::new(&mut io).poll_flush(&mut cx).is_ready(),
            "nothing held: no yield"
        );
        assert_eq!(wakes.0.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_flush_yields_at_most_the_maximum_times() {
        let waker = std::task::Waker::from(Arc::new(CountWakes::default()));
        let mut cx = Context::from_waker(&waker);
        let mut io = HyperIo::new(Recorder::default());
        let mut pending = 0;
        loop {
            write(&mut io, &mut cx, b"x");
            match Pin::new(&mut io).poll_flush(&mut cx) {
                Poll::Pending => pending += 1,
                Poll::Ready(r) => break r.unwrap(),
            }
        }
        assert_eq!(pending, FLUSH_YIELDS_MAX);
        assert_eq!(
            io.io.writes,
            vec![vec![b'x'; FLUSH_YIELDS_MAX as usize + 1]]
        );
    }

    #[test]
    fn large_writes_go_out_after_what_is_held_and_shutdown_sends_the_rest() {
        let waker = std::task::Waker::from(Arc::new(CountWakes::default()));
        let mut cx = Context::from_waker(&waker);
        let mut io = HyperIo::new(Recorder::default());
        write(&mut io, &mut cx, b"head");
        let big = vec![7u8; WRITE_COALESCE_MAX_BYTES];
        write(&mut io, &mut cx, &big);
        assert_eq!(
            io.io.writes,
            vec![b"head".to_vec(), big],
            "in order, the big one as is"
        );
        write(&mut io, &mut cx, b"tail");
        assert!(Pin::new(&mut io).poll_shutdown(&mut cx).is_ready());
        assert_eq!(io.io.writes.last().unwrap(), b"tail");
        assert!(io.io.closed);
    }
}
