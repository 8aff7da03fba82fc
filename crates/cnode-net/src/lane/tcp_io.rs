//! The TCP side of a lane: a tokio socket as a `futures` stream for rustls.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use futures::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A tokio TCP stream as a `futures` stream for rustls, with vectored
/// writes and buffered reads.
///
/// Writes: `tokio_util`'s `Compat` passes on only the first buffer of a
/// vectored write, so rustls sent one 16 KiB TLS record per system call and
/// TCP one segment per record (16,600 `sendto`s per 256 MiB).
///
/// Reads: rustls asks for at most one record (~16 KiB) at a time; answered
/// from a buffer filled by one `recv` each, a receiver makes a fraction of
/// the system calls for the price of a copy of data that is still in the
/// cache. The buffer starts at [`READ_BUFFER_MIN`] (a server reading small
/// requests keeps that) and doubles, up to [`READ_BUFFER`], while `recv`s
/// fill it.
pub(super) struct TcpIo {
    sock: TcpStream,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
}

/// The smallest and the largest read buffer of a lane.
const READ_BUFFER_MIN: usize = 16 * 1024;
const READ_BUFFER: usize = 128 * 1024;

impl TcpIo {
    pub(super) fn new(sock: TcpStream) -> Self {
        Self {
            sock,
            buf: Box::default(),
            pos: 0,
            len: 0,
        }
    }
}

impl TcpIo {
    /// The socket back, and how many bytes were read from it and not yet
    /// taken (lost with the buffer).
    pub(super) fn into_parts(self) -> (TcpStream, usize) {
        (self.sock, self.len - self.pos)
    }
}

impl AsyncRead for TcpIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pos == this.len {
            if out.len() >= READ_BUFFER {
                let mut out = tokio::io::ReadBuf::new(out);
                ready!(tokio::io::AsyncRead::poll_read(
                    Pin::new(&mut this.sock),
                    cx,
                    &mut out
                ))?;
                return Poll::Ready(Ok(out.filled().len()));
            }
            if this.buf.is_empty() || (this.len == this.buf.len() && this.len < READ_BUFFER) {
                // First read, or the last one filled the buffer: grow it.
                let size = (this.buf.len() * 2).clamp(READ_BUFFER_MIN, READ_BUFFER);
                this.buf = vec![0; size].into_boxed_slice();
            }
            let mut fill = tokio::io::ReadBuf::new(&mut this.buf);
            ready!(tokio::io::AsyncRead::poll_read(
                Pin::new(&mut this.sock),
                cx,
                &mut fill
            ))?;
            (this.pos, this.len) = (0, fill.filled().len());
        }
        let n = out.len().min(this.len - this.pos);
        out[..n].copy_from_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for TcpIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write(Pin::new(&mut self.sock), cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write_vectored(Pin::new(&mut self.sock), cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::io::AsyncWrite::poll_flush(Pin::new(&mut self.sock), cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut self.sock), cx)
    }
}

#[cfg(test)]
mod tests {
    use futures::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn tcp_io_reads_every_byte_in_order_whatever_the_read_sizes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let data: Vec<u8> = (0..(3 * READ_BUFFER + 12345))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            let mut io = TcpIo::new(TcpStream::connect(addr).await.unwrap());
            // Vectored: both parts must arrive, in order.
            let (a, b) = sent.split_at(1000);
            let mut parts = [io::IoSlice::new(a), io::IoSlice::new(b)];
            let mut parts = &mut parts[..];
            while !parts.is_empty() {
                let n =
                    futures::future::poll_fn(|cx| Pin::new(&mut io).poll_write_vectored(cx, parts))
                        .await
                        .unwrap();
                io::IoSlice::advance_slices(&mut parts, n);
            }
            io.close().await.unwrap();
        });
        let mut io = TcpIo::new(listener.accept().await.unwrap().0);
        let mut got = Vec::new();
        // Small reads (from the buffer) and one larger than it (direct).
        for size in [1usize, 7, 16 * 1024, READ_BUFFER + 1, 300].iter().cycle() {
            let mut chunk = vec![0u8; *size];
            let n = io.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        writer.await.unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data);
    }
}
