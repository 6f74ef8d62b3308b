//! Message bodies: `DATA` decoding (dot-unstuffing, end detection, bare CR/LF, size limit),
//! the same CR/LF check over `BDAT` chunks, and dot-stuffing for the client side.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line (after CRLF, or at the very start).
    LineStart,
    /// Inside a line.
    Mid,
    /// After a CR inside a line.
    Cr,
    /// After a `.` at the start of a line.
    Dot,
    /// After `.` CR at the start of a line.
    DotCr,
    /// The terminator was seen.
    Done,
}

/// How far [`DataDecoder::feed`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataProgress {
    /// Bytes of the input used; when `done`, the rest belongs to the next command.
    pub consumed: usize,
    /// The `CRLF.CRLF` terminator was seen.
    pub done: bool,
}

/// Decodes the bytes that follow `DATA` up to the terminating `CRLF.CRLF`.
///
/// The message text (with CRLF line ends, the last line's CRLF included, the terminator's dot
/// line not) is appended to the caller's buffer until it reaches `max_size`; past that, bytes are
/// only counted and [`DataDecoder::too_big`] turns true, so the server can read to the end and
/// answer 552 without holding the excess. Only CR LF `.` CR LF ends the data: a bare LF or CR
/// never starts or ends a line, and is recorded in [`DataDecoder::bare_line_ending`].
#[derive(Debug, Clone)]
pub struct DataDecoder {
    state: State,
    max_size: usize,
    size: u64,
    bare: bool,
}

impl DataDecoder {
    pub fn new(max_size: usize) -> Self {
        Self {
            state: State::LineStart,
            max_size,
            size: 0,
            bare: false,
        }
    }

    /// Decoded size so far (including bytes dropped past the limit).
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn too_big(&self) -> bool {
        self.size > self.max_size as u64
    }

    /// Whether a CR not followed by LF, or an LF not preceded by CR, was seen.
    pub fn bare_line_ending(&self) -> bool {
        self.bare
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        let new = self.size + bytes.len() as u64;
        if new <= self.max_size as u64 {
            out.extend_from_slice(bytes);
        }
        self.size = new;
    }

    /// Feeds received bytes, appending decoded text to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> DataProgress {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Done {
                break;
            }
            if self.state == State::Mid {
                // Fast path: copy everything up to the next CR or LF in one go.
                let rest = &input[i..];
                let n = rest
                    .iter()
                    .position(|&b| b == b'\r' || b == b'\n')
                    .unwrap_or(rest.len());
                if n > 0 {
                    self.emit(out, &rest[..n]);
                    i += n;
                    continue;
                }
            }
            let b = input[i];
            i += 1;
            self.step(b, out);
        }
        DataProgress {
            consumed: i,
            done: self.state == State::Done,
        }
    }

    fn step(&mut self, b: u8, out: &mut Vec<u8>) {
        self.state = match (self.state, b) {
            (State::Done, _) => State::Done,
            (State::LineStart, b'.') => State::Dot,
            (State::LineStart | State::Mid, b'\r') => State::Cr,
            (State::LineStart | State::Mid, b'\n') => {
                self.bare = true;
                self.emit(out, b"\n");
                State::Mid
            }
            (State::LineStart | State::Mid, _) => {
                self.emit(out, &[b]);
                State::Mid
            }
            (State::Cr, b'\n') => {
                self.emit(out, b"\r\n");
                State::LineStart
            }
            (State::Cr, b'\r') => {
                self.bare = true;
                self.emit(out, b"\r");
                State::Cr
            }
            (State::Cr, _) => {
                self.bare = true;
                self.emit(out, b"\r");
                self.emit(out, &[b]);
                State::Mid
            }
            // A leading dot is removed (dot-stuffing); the rest of the line is ordinary text.
            (State::Dot, b'\r') => State::DotCr,
            (State::Dot, _) => {
                self.state = State::Mid;
                self.step(b, out);
                return;
            }
            (State::DotCr, b'\n') => State::Done,
            (State::DotCr, _) => {
                // `.` CR then something else: the dot was stuffing, the CR is bare.
                self.state = State::Cr;
                self.step(b, out);
                return;
            }
        };
    }
}

/// Checks `BDAT` chunks (which carry the message unchanged) for bare CR or LF, across chunk
/// boundaries.
#[derive(Debug, Clone, Default)]
pub struct BareLineEndings {
    last_cr: bool,
    found: bool,
}

impl BareLineEndings {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            match b {
                b'\n' if !self.last_cr => self.found = true,
                _ if self.last_cr && b != b'\n' => self.found = true,
                _ => {}
            }
            self.last_cr = b == b'\r';
        }
    }

    /// True if a bare CR or LF was seen (a CR at the very end counts).
    pub fn found(&self) -> bool {
        self.found || self.last_cr
    }
}

/// Dot-stuffs a message for sending with `DATA` and appends the terminator. A message not ending
/// in CRLF gets one first.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut line_start = true;
    for &b in message {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    if !message.is_empty() && !message.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8], max: usize) -> (Vec<u8>, DataDecoder, usize) {
        let mut d = DataDecoder::new(max);
        let mut out = Vec::new();
        let p = d.feed(input, &mut out);
        (out, d, p.consumed)
    }

    #[test]
    fn unstuffs_and_stops_at_terminator() {
        let (out, d, n) = decode(b"Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n", 1000);
        assert_eq!(out, b"Subject: x\r\n\r\n.dot\r\n");
        assert!(d.is_done() && !d.bare_line_ending());
        assert_eq!(n, 24);
        let (out, d, _) = decode(b".\r\n", 1000);
        assert!(d.is_done() && out.is_empty());
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let input = b"a\r\n.b\r\n..\r\nc.\r\n.\r\n";
        let (whole, _, _) = decode(input, 1000);
        let mut d = DataDecoder::new(1000);
        let mut out = Vec::new();
        for b in input {
            d.feed(&[*b], &mut out);
        }
        assert!(d.is_done());
        assert_eq!(out, whole);
    }

    #[test]
    fn bare_endings_never_terminate() {
        for input in [
            &b"a\n.\nb\r\n.\r\n"[..],
            b"a\r\n.\nb\r\n.\r\n",
            b"a\n.\r\nb\r\n.\r\n",
            b"a\r.\rb\r\n.\r\n",
        ] {
            let (_, d, n) = decode(input, 1000);
            assert!(d.is_done(), "{input:?}");
            assert_eq!(n, input.len(), "{input:?}");
            assert!(d.bare_line_ending(), "{input:?}");
        }
    }

    #[test]
    fn size_limit_counts_without_buffering() {
        let mut input = vec![b'x'; 5000];
        input.extend_from_slice(b"\r\n.\r\n");
        let (out, d, _) = decode(&input, 100);
        assert!(d.too_big() && d.is_done());
        assert!(out.len() <= 100);
        assert_eq!(d.size(), 5002);
    }

    #[test]
    fn bdat_check_across_chunks() {
        let mut c = BareLineEndings::new();
        c.feed(b"a\r");
        c.feed(b"\nb\r\n");
        assert!(!c.found());
        c.feed(b"x\ny");
        assert!(c.found());
        let mut c = BareLineEndings::new();
        c.feed(b"a\r");
        assert!(c.found());
    }

    #[test]
    fn stuffing_round_trip() {
        let msg = b"a\r\n.b\r\n.\r\n";
        let wire = dot_stuff(msg);
        assert_eq!(wire, b"a\r\n..b\r\n..\r\n.\r\n");
        let (back, d, _) = decode(&wire, 1000);
        assert!(d.is_done());
        assert_eq!(back, msg);
    }
}
