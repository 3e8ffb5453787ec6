//! A delay on everything a process receives, to emulate a slower network
//! between the nodes of a fleet run on one machine (`wimpy local
//! --emulate`), where no packet scheduler is at hand to add one.
//!
//! Each connection's bytes are read from the socket as they come and handed
//! on a fixed time after they arrived: a delay line, so the link's
//! throughput is kept and only its latency grows. Reading stops while a
//! bounded number of chunks wait, so a slow reader still holds the sender
//! back.

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// The delay this process adds to what it receives, if one was set.
static DELAY: OnceLock<Duration> = OnceLock::new();

/// Chunks read from a socket and not yet handed on, at most.
const WAITING: usize = 64;
/// Bytes per read from the socket.
const CHUNK: usize = 64 << 10;

/// Delays everything this process receives on its connections by `delay`
/// from then on (set once, at start).
pub fn set_receive_delay(delay: Duration) {
    let _ = DELAY.set(delay);
}

/// The delay set, if any (zero counts as none).
pub(crate) fn receive_delay() -> Option<Duration> {
    DELAY.get().copied().filter(|d| !d.is_zero())
}

/// `reader`, its bytes handed on `delay` after they arrived. The reading
/// runs as a task of the current `LocalSet`.
pub(crate) fn delayed<R: AsyncRead + Unpin + 'static>(mut reader: R, delay: Duration) -> DelayLine {
    let (tx, rx) = tokio::sync::mpsc::channel::<(Instant, Chunk)>(WAITING);
    tokio::task::spawn_local(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let read = reader.read(&mut buf).await;
            let due = Instant::now() + delay;
            let last = !matches!(read, Ok(n) if n > 0);
            if tx.send((due, read.map(|n| buf[..n].to_vec()))).await.is_err() || last {
                return;
            }
        }
    });
    DelayLine { rx, current: Vec::new(), at: 0, waiting: None }
}

/// What the reading task hands on: a chunk (empty at the end of the
/// stream) or the error that ended it.
type Chunk = std::io::Result<Vec<u8>>;

/// The reading end of [`delayed`].
pub(crate) struct DelayLine {
    rx: tokio::sync::mpsc::Receiver<(Instant, Chunk)>,
    /// The chunk being handed on, and how far.
    current: Vec<u8>,
    at: usize,
    /// The next chunk, and the sleep until it is due.
    waiting: Option<(Pin<Box<tokio::time::Sleep>>, Chunk)>,
}

impl AsyncRead for DelayLine {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut [u8]) -> Poll<std::io::Result<usize>> {
        loop {
            if self.at < self.current.len() {
                let n = out.len().min(self.current.len() - self.at);
                out[..n].copy_from_slice(&self.current[self.at..self.at + n]);
                self.at += n;
                return Poll::Ready(Ok(n));
            }
            if let Some((sleep, _)) = self.waiting.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let (_, chunk) = self.waiting.take().expect("a chunk waits");
                match chunk {
                    // An empty chunk is the end of the stream.
                    Ok(bytes) if bytes.is_empty() => return Poll::Ready(Ok(0)),
                    Ok(bytes) => {
                        self.current = bytes;
                        self.at = 0;
                        continue;
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some((due, chunk))) => {
                    self.waiting = Some((Box::pin(tokio::time::sleep_until(due)), chunk));
                }
                // The reading task ended after handing on the end.
                Poll::Ready(None) => return Poll::Ready(Ok(0)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::AsyncWriteExt;

    #[test]
    fn bytes_arrive_whole_and_in_order_a_delay_later() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        tokio::task::LocalSet::new().block_on(&rt, async {
            let (a, b) = tokio::io::duplex(1 << 16);
            let (reader, _) = tokio::io::split(a);
            let (_, mut writer) = tokio::io::split(b);
            let mut line =
                delayed(tokio_util::compat::TokioAsyncReadCompatExt::compat(reader), Duration::from_millis(100));
            let sent: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
            let began = Instant::now();
            let writing = {
                let sent = sent.clone();
                async move {
                    let mut w = tokio_util::compat::TokioAsyncWriteCompatExt::compat_write(&mut writer);
                    w.write_all(&sent).await.unwrap();
                    w.close().await.unwrap();
                    drop(writer);
                }
            };
            let reading = async {
                let mut first = [0u8; 1];
                line.read_exact(&mut first).await.unwrap();
                let first_at = began.elapsed();
                let mut rest = Vec::new();
                line.read_to_end(&mut rest).await.unwrap();
                (first_at, [&first[..], &rest].concat())
            };
            let ((), (first_at, got)) = tokio::join!(writing, reading);
            assert!(first_at >= Duration::from_millis(100), "the first byte came after {first_at:?}");
            assert_eq!(got, sent);
            // A delay line, not a queue of delays: 300 kB in chunks of at
            // most 64 KiB (five or more) take one delay, not one per chunk.
            assert!(began.elapsed() < Duration::from_millis(400), "{:?}", began.elapsed());
        });
    }
}
