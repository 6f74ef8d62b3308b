//! Content-Transfer-Encoding decoders (RFC 2045 §6.7, §6.8), lenient as mail needs them; the
//! one implementation the preview, the full-text index, IMAP's BINARY and SEARCH all use.

/// Base64 as RFC 2045 §6.8 has a decoder read it: characters outside the alphabet (line
/// breaks, junk) are ignored, and the first `=` ends the data.
pub fn decode_base64(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn hex(c: Option<&u8>) -> Option<u8> {
    match c? {
        c @ b'0'..=b'9' => Some(c - b'0'),
        c @ b'A'..=b'F' => Some(c - b'A' + 10),
        c @ b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Quoted-printable (RFC 2045 §6.7), leniently: `=XX` is a byte, `=` before a line break
/// (after optional white space) a soft break, white space at the end of a line is transport
/// padding and goes, and any other `=` stays as it is (as the RFC suggests a robust decoder
/// do; HTML bodies with bare `=` are common). Line breaks stay as written.
pub fn decode_quoted_printable(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let c = input[i];
        if c == b' ' || c == b'\t' {
            // Padding if only white space is left before the line break (or the end).
            let mut j = i;
            while j < input.len() && (input[j] == b' ' || input[j] == b'\t') {
                j += 1;
            }
            if matches!(&input[j..], [] | [b'\n', ..] | [b'\r', b'\n', ..]) {
                i = j;
                continue;
            }
            out.extend_from_slice(&input[i..j]);
            i = j;
            continue;
        }
        if c != b'=' {
            out.push(c);
            i += 1;
            continue;
        }
        if let (Some(h), Some(l)) = (hex(input.get(i + 1)), hex(input.get(i + 2))) {
            out.push((h << 4) | l);
            i += 3;
            continue;
        }
        let mut j = i + 1;
        while j < input.len() && (input[j] == b' ' || input[j] == b'\t') {
            j += 1;
        }
        match &input[j..] {
            [] => break,
            [b'\n', ..] => i = j + 1,
            [b'\r', b'\n', ..] => i = j + 2,
            _ => {
                out.push(b'=');
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_padding_and_soft_breaks() {
        assert_eq!(
            decode_quoted_printable(b"hello  \r\nfoo\t=20\t\r\nsoft= \t\r\nend=\r\n"),
            b"hello\r\nfoo\t \r\nsoftend"
        );
        assert_eq!(decode_quoted_printable(b"a b  c"), b"a b  c");
        assert_eq!(decode_quoted_printable(b"tail  "), b"tail");
    }
}
