//! A request-response codec for opaque byte messages: a u32 little-endian
//! length, then the bytes. Lengths over the protocol's caps are refused before
//! anything is allocated; the protocols' own crates decode the bytes.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{StreamProtocol, request_response};

/// Length-prefixed bytes with size caps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BytesCodec {
    pub(crate) max_request: usize,
    pub(crate) max_response: usize,
}

pub(crate) async fn read_frame<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
) -> io::Result<Vec<u8>> {
    let len = read_len(io, max).await?;
    let mut buf = Vec::with_capacity(len);
    append(io, &mut buf, len).await?;
    Ok(buf)
}

async fn read_len<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<usize> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes is over the {max}-byte limit"),
        ));
    }
    Ok(len)
}

/// Reads `n` more bytes onto the end of `buf`. Zeroed a step at a time, just
/// before it is filled: zeroing a whole 1 MiB piece first and filling it
/// later was a pass over cold memory, 13 % of a leecher's CPU (`perf`,
/// 256 MiB over a lane); a step this size is still in the cache when the
/// data lands in it.
async fn append<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    buf: &mut Vec<u8>,
    n: usize,
) -> io::Result<()> {
    let end = buf.len() + n;
    while buf.len() < end {
        let start = buf.len();
        buf.resize(start + (end - start).min(READ_STEP), 0);
        io.read_exact(&mut buf[start..]).await?;
    }
    Ok(())
}

/// How much of a frame is zeroed and read at once: two TLS records.
const READ_STEP: usize = 32 * 1024;

/// One frame: a u32 little-endian length, then the bytes; flushed (lanes
/// keep their connection open after it).
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(wr: &mut W, data: &[u8]) -> io::Result<()> {
    let len = u32::try_from(data.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    wr.write_all(&len.to_le_bytes()).await?;
    wr.write_all(data).await?;
    wr.flush().await
}

/// A request-response message: capped, one frame, then the substream closes.
async fn write_message<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    data: &[u8],
    max: usize,
) -> io::Result<()> {
    if data.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "message of {} bytes is over the {max}-byte limit",
                data.len()
            ),
        ));
    }
    write_frame(io, data).await?;
    io.close().await
}

impl request_response::Codec for BytesCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_request).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_response).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_message(io, &req, self.max_request).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_message(io, &res, self.max_response).await
    }
}
