//! Reading newline-delimited lines with a length cap, so a peer cannot make us buffer
//! without bound, and a too-long line is skipped rather than ending the connection.

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// One line read from the peer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// The line's bytes, without the newline.
    Complete(Vec<u8>),
    /// The line was longer than the cap; its bytes were discarded.
    TooLong,
}

/// Buffered reader of capped lines.
pub(crate) struct LineReader<R> {
    inner: BufReader<R>,
    max: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// A reader accepting lines of at most `max` bytes.
    pub(crate) fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner: BufReader::new(inner),
            max,
        }
    }

    /// The next line, or `None` at end of stream. A final line without newline counts.
    /// Cancel-safe only between lines: callers must not drop a pending call mid-line
    /// unless they drop the reader too.
    pub(crate) async fn next_line(&mut self) -> io::Result<Option<Line>> {
        let mut buf = Vec::new();
        let mut too_long = false;
        loop {
            let avail = self.inner.fill_buf().await?;
            if avail.is_empty() {
                return Ok(match (too_long, buf.is_empty()) {
                    (true, _) => Some(Line::TooLong),
                    (false, true) => None,
                    (false, false) => Some(Line::Complete(buf)),
                });
            }
            let (chunk, used, done) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (&avail[..i], i + 1, true),
                None => (avail, avail.len(), false),
            };
            if !too_long {
                if buf.len() + chunk.len() > self.max {
                    too_long = true;
                    buf = Vec::new();
                } else {
                    buf.extend_from_slice(chunk);
                }
            }
            self.inner.consume(used);
            if done {
                return Ok(Some(if too_long {
                    Line::TooLong
                } else {
                    Line::Complete(buf)
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_split_capped_and_resume_after_a_long_one() {
        let data = b"ab\n0123456789\ncd\ntail".to_vec();
        let mut r = LineReader::new(&data[..], 5);
        assert_eq!(
            r.next_line().await.unwrap(),
            Some(Line::Complete(b"ab".to_vec()))
        );
        assert_eq!(r.next_line().await.unwrap(), Some(Line::TooLong));
        assert_eq!(
            r.next_line().await.unwrap(),
            Some(Line::Complete(b"cd".to_vec()))
        );
        assert_eq!(
            r.next_line().await.unwrap(),
            Some(Line::Complete(b"tail".to_vec()))
        );
        assert_eq!(r.next_line().await.unwrap(), None);
    }
}
