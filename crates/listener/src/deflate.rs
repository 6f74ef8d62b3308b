//! Raw DEFLATE (RFC 1951, no zlib header) in both directions over a stream, as IMAP
//! `COMPRESS=DEFLATE` (RFC 4978) needs it.
//!
//! Writes are compressed into a small buffer and reach the stream on `flush`, which ends them
//! with a sync flush (an empty stored block) so the peer can inflate all that was written.
//! Reads inflate straight into the caller's buffer: however much a few compressed bytes
//! expand to, no more is produced than the caller asked for. The memory is the compressor's
//! and the inflater's state (miniz_oxide's, fixed: about 310 KiB and 45 KiB) and two buffers
//! of [`BUF`] bytes, about 395 KiB in all (`tests/deflate_memory.rs`), whatever passes through.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Compressed bytes buffered each way.
pub const BUF: usize = 16 * 1024;

/// A stream whose bytes are raw DEFLATE both ways.
pub struct Deflate<S> {
    inner: S,
    compress: Compress,
    decompress: Decompress,
    /// Compressed input not yet inflated: `rbuf[rpos..rlen]`.
    rbuf: Box<[u8]>,
    rpos: usize,
    rlen: usize,
    /// The peer ended its DEFLATE stream (a final block): what follows is not read.
    finished: bool,
    /// Compressed output not yet written to `inner`: `wbuf[wpos..]`.
    wbuf: Vec<u8>,
    wpos: usize,
    /// Bytes were written since the last sync flush.
    unflushed: bool,
}

fn corrupt(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt DEFLATE data: {e}"),
    )
}

impl<S> Deflate<S> {
    /// Wraps `inner`; `pending` is compressed input already read from it (the bytes that
    /// followed the command that turned compression on), inflated before anything else.
    pub fn new(inner: S, pending: &[u8]) -> Deflate<S> {
        let mut rbuf = vec![0u8; BUF.max(pending.len())].into_boxed_slice();
        rbuf[..pending.len()].copy_from_slice(pending);
        Deflate {
            inner,
            compress: Compress::new(Compression::default(), false),
            decompress: Decompress::new(false),
            rbuf,
            rpos: 0,
            rlen: pending.len(),
            finished: false,
            wbuf: Vec::with_capacity(BUF),
            wpos: 0,
            unflushed: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Bytes read from and written to the stream underneath so far (compressed), and bytes
    /// handed out and taken in (uncompressed).
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        (
            self.decompress.total_in(),
            self.compress.total_out(),
            self.decompress.total_out(),
            self.compress.total_in(),
        )
    }
}

impl<S: AsyncWrite + Unpin> Deflate<S> {
    /// Writes all of `wbuf` to the stream.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.wpos < self.wbuf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.wbuf[self.wpos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wpos += n;
        }
        self.wbuf.clear();
        self.wpos = 0;
        Poll::Ready(Ok(()))
    }

    /// Compresses `input` into the spare room of `wbuf`; the bytes of `input` consumed, and
    /// whether the output filled `wbuf`.
    fn deflate(&mut self, input: &[u8], flush: FlushCompress) -> io::Result<(usize, bool)> {
        let before = self.compress.total_in();
        self.compress
            .compress_vec(input, &mut self.wbuf, flush)
            .map_err(corrupt)?;
        let consumed = (self.compress.total_in() - before) as usize;
        Ok((consumed, self.wbuf.len() == self.wbuf.capacity()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deflate<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.finished {
                return Poll::Ready(Ok(()));
            }
            let (in_before, out_before) = (this.decompress.total_in(), this.decompress.total_out());
            let status = this
                .decompress
                .decompress(
                    &this.rbuf[this.rpos..this.rlen],
                    buf.initialize_unfilled(),
                    FlushDecompress::None,
                )
                .map_err(corrupt)?;
            let consumed = (this.decompress.total_in() - in_before) as usize;
            let produced = (this.decompress.total_out() - out_before) as usize;
            this.rpos += consumed;
            buf.advance(produced);
            if status == Status::StreamEnd {
                this.finished = true;
            }
            if produced > 0 {
                return Poll::Ready(Ok(()));
            }
            if this.finished {
                continue;
            }
            if this.rpos < this.rlen {
                if consumed == 0 {
                    // Input and room for output, yet no progress.
                    return Poll::Ready(Err(corrupt("the inflater is stuck")));
                }
                continue;
            }
            // All input inflated: read more.
            this.rpos = 0;
            this.rlen = 0;
            let mut rb = ReadBuf::new(&mut this.rbuf);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n == 0 {
                // End of the connection.
                return Poll::Ready(Ok(()));
            }
            this.rlen = n;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deflate<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            if this.wbuf.len() == this.wbuf.capacity() {
                ready!(this.poll_drain(cx))?;
            }
            let (consumed, _) = this.deflate(data, FlushCompress::None)?;
            if consumed > 0 {
                this.unflushed = true;
                return Poll::Ready(Ok(consumed));
            }
            if this.wbuf.len() < this.wbuf.capacity() {
                return Poll::Ready(Err(corrupt("the compressor is stuck")));
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.unflushed {
            if this.wbuf.len() == this.wbuf.capacity() {
                ready!(this.poll_drain(cx))?;
            }
            // Done once the sync flush leaves room in the output: all of it is out.
            let (_, full) = this.deflate(&[], FlushCompress::Sync)?;
            if !full {
                this.unflushed = false;
            }
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    /// A peer's raw inflater and deflater, as a client would have them.
    struct Peer {
        inflate: Decompress,
        deflate: Compress,
    }

    impl Peer {
        fn new() -> Peer {
            Peer {
                inflate: Decompress::new(false),
                deflate: Compress::new(Compression::default(), false),
            }
        }
        fn inflate(&mut self, data: &[u8]) -> Vec<u8> {
            let mut out = Vec::with_capacity(data.len() * 4 + 1024);
            let mut pos = 0;
            loop {
                if out.len() == out.capacity() {
                    out.reserve(out.capacity());
                }
                let before = self.inflate.total_in();
                self.inflate
                    .decompress_vec(&data[pos..], &mut out, FlushDecompress::Sync)
                    .unwrap();
                pos += (self.inflate.total_in() - before) as usize;
                if pos == data.len() && out.len() < out.capacity() {
                    return out;
                }
            }
        }
        fn deflate(&mut self, data: &[u8]) -> Vec<u8> {
            let mut out = Vec::with_capacity(data.len() + 1024);
            let mut pos = 0;
            loop {
                if out.len() == out.capacity() {
                    out.reserve(out.capacity());
                }
                let before = self.deflate.total_in();
                self.deflate
                    .compress_vec(&data[pos..], &mut out, FlushCompress::Sync)
                    .unwrap();
                pos += (self.deflate.total_in() - before) as usize;
                if pos == data.len() && out.len() < out.capacity() {
                    return out;
                }
            }
        }
    }

    /// Reads and inflates until `want` bytes came out: all of them must be there once the
    /// writer has flushed.
    async fn inflate_from(
        s: &mut tokio::io::DuplexStream,
        peer: &mut Peer,
        want: usize,
    ) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while got.len() < want {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "unexpected end");
            got.extend(peer.inflate(&buf[..n]));
        }
        got
    }

    fn text(n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n);
        let mut i = 0u64;
        while v.len() < n {
            write!(
                v,
                "line {i}: the quick brown fox jumps over the lazy dog\r\n"
            )
            .unwrap();
            i += 1;
        }
        v.truncate(n);
        v
    }

    #[tokio::test]
    async fn round_trip_with_flate2_on_the_other_end() {
        let (a, mut b) = duplex(1 << 20);
        let mut z = Deflate::new(a, &[]);
        let mut peer = Peer::new();

        z.write_all(b"* OK hello\r\n").await.unwrap();
        z.flush().await.unwrap();
        let got = inflate_from(&mut b, &mut peer, 12).await;
        assert_eq!(got, b"* OK hello\r\n");

        b.write_all(&peer.deflate(b"a1 NOOP\r\n")).await.unwrap();
        let mut buf = [0u8; 64];
        let n = z.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"a1 NOOP\r\n");
    }

    #[tokio::test]
    async fn many_small_writes_each_flushed() {
        let (a, mut b) = duplex(1 << 20);
        let mut z = Deflate::new(a, &[]);
        let mut peer = Peer::new();
        for i in 0..500 {
            let line = format!("* {i} EXISTS\r\n");
            z.write_all(line.as_bytes()).await.unwrap();
            z.flush().await.unwrap();
            // Each flush alone gives the peer the whole line.
            let got = inflate_from(&mut b, &mut peer, line.len()).await;
            assert_eq!(got, line.as_bytes(), "line {i}");
        }
        // And the other way, one small compressed command at a time.
        for i in 0..200 {
            let line = format!("a{i} NOOP\r\n");
            b.write_all(&peer.deflate(line.as_bytes())).await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 7];
            while got.len() < line.len() {
                let n = z.read(&mut buf).await.unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got, line.as_bytes());
        }
    }

    #[tokio::test]
    async fn a_large_message_both_ways() {
        let big = text(3 * 1024 * 1024 + 17);
        let (a, b) = duplex(64 * 1024);
        let mut z = Deflate::new(a, &[]);
        let sent = big.clone();
        // The peer inflates what we write while we write it (the pipe is smaller than it).
        let reader = tokio::spawn(async move {
            let mut b = b;
            let mut peer = Peer::new();
            let mut wire = Vec::new();
            let mut buf = vec![0u8; 32 * 1024];
            let mut out = Vec::new();
            while out.len() < sent.len() {
                let n = b.read(&mut buf).await.unwrap();
                assert!(n > 0);
                wire.extend_from_slice(&buf[..n]);
                out.extend(peer.inflate(&buf[..n]));
            }
            assert_eq!(out, sent);
            // Then the peer sends it back compressed.
            let compressed = peer.deflate(&sent);
            b.write_all(&compressed).await.unwrap();
            (wire.len(), compressed.len(), b)
        });
        z.write_all(&big).await.unwrap();
        z.flush().await.unwrap();
        let mut back = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        while back.len() < big.len() {
            let n = z.read(&mut buf).await.unwrap();
            assert!(n > 0);
            back.extend_from_slice(&buf[..n]);
        }
        assert_eq!(back, big);
        let (wire, compressed, _b) = reader.await.unwrap();
        assert!(
            wire < big.len() / 4,
            "{wire} bytes on the wire for {}",
            big.len()
        );
        let (r_in, w_out, r_out, w_in) = z.totals();
        assert_eq!((r_in, w_out), (compressed as u64, wire as u64));
        assert_eq!((r_out, w_in), (big.len() as u64, big.len() as u64));
    }

    #[tokio::test]
    async fn bytes_read_before_the_switch_are_inflated_first() {
        let mut peer = Peer::new();
        let first = peer.deflate(b"a2 SELECT INBOX\r\n");
        let second = peer.deflate(b"a3 LOGOUT\r\n");
        let (a, mut b) = duplex(1 << 16);
        // Half of the second command already read too.
        let mut pending = first.clone();
        pending.extend_from_slice(&second[..second.len() / 2]);
        let mut z = Deflate::new(a, &pending);
        b.write_all(&second[second.len() / 2..]).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        let want = b"a2 SELECT INBOX\r\na3 LOGOUT\r\n";
        while got.len() < want.len() {
            let n = z.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn garbage_input_is_an_error_not_a_panic() {
        for garbage in [
            &b"a1 NOOP\r\n"[..],
            &[0xff; 64][..],
            &[0x07, 0x00, 0x01, 0x02, 0x03][..],
        ] {
            let (a, mut b) = duplex(1 << 16);
            let mut z = Deflate::new(a, &[]);
            b.write_all(garbage).await.unwrap();
            drop(b);
            let mut buf = [0u8; 1024];
            let mut result = Ok(0);
            // Either an error at once, or (a prefix that is valid so far) an error or the end.
            for _ in 0..4 {
                result = z.read(&mut buf).await;
                if !matches!(result, Ok(n) if n > 0) {
                    break;
                }
            }
            let err = result.expect_err("garbage must not inflate");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        }
    }

    #[tokio::test]
    async fn an_inflate_bomb_is_read_a_buffer_at_a_time() {
        // 64 MiB of zeros compress to about 64 KiB.
        let mut peer = Peer::new();
        let zeros = vec![0u8; 64 * 1024 * 1024];
        let bomb = peer.deflate(&zeros);
        assert!(bomb.len() < 128 * 1024);
        drop(zeros);
        let (a, mut b) = duplex(1 << 20);
        let mut z = Deflate::new(a, &[]);
        b.write_all(&bomb).await.unwrap();
        let mut buf = [0u8; 4096];
        let mut total = 0usize;
        while total < 64 * 1024 * 1024 {
            let n = z.read(&mut buf).await.unwrap();
            assert!(n > 0 && n <= buf.len());
            assert!(buf[..n].iter().all(|&c| c == 0));
            total += n;
        }
        assert_eq!(total, 64 * 1024 * 1024);
    }
}
