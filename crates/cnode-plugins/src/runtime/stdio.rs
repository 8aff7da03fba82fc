//! The guest's stdout and stderr: captured in memory (bounded) during a
//! call, then written to the node's log line by line.
//!
//! Writes never fail: past the bound the bytes are dropped and counted, so a
//! chatty guest is not broken by its logging (Rust's `println!` panics when
//! stdout refuses a write).

use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::{
    cli::{IsTerminal, StdoutStream},
    p2::{OutputStream, Pollable, StreamResult},
};

#[derive(Debug, Default)]
struct Captured {
    buf: Vec<u8>,
    dropped: usize,
}

/// A bounded in-memory stdout/stderr.
#[derive(Debug, Clone)]
pub(crate) struct LogSink {
    inner: Arc<Mutex<Captured>>,
    cap: usize,
}

impl LogSink {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            inner: Arc::default(),
            cap,
        }
    }

    fn push(&self, bytes: &[u8]) {
        let Ok(mut c) = self.inner.lock() else { return };
        let room = self.cap.saturating_sub(c.buf.len());
        let take = bytes.len().min(room);
        c.buf.extend_from_slice(&bytes[..take]);
        c.dropped += bytes.len() - take;
    }

    /// The captured lines (a final partial line included) and the number of
    /// bytes dropped past the bound; empties the sink.
    pub(crate) fn take(&self) -> (Vec<String>, usize) {
        let Ok(mut c) = self.inner.lock() else {
            return (Vec::new(), 0);
        };
        let captured = std::mem::take(&mut *c);
        let text = String::from_utf8_lossy(&captured.buf);
        let lines = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        (lines, captured.dropped)
    }
}

impl IsTerminal for LogSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogSink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogSink {
    async fn ready(&mut self) {}
}

impl OutputStream for LogSink {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl AsyncWrite for LogSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
