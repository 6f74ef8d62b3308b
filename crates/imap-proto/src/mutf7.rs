//! Modified UTF-7 (RFC 3501 §5.1.3), the mailbox name encoding of IMAP4rev1 clients that have
//! not enabled UTF-8.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn value(b: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == b).map(|p| p as u32)
}

/// Decodes a modified UTF-7 name; `None` if it is not valid (8-bit bytes, an unterminated or
/// malformed `&...-` run, printable ASCII encoded in base64, a broken surrogate pair).
pub fn decode(input: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if !(0x20..0x7f).contains(&b) {
            return None;
        }
        if b != b'&' {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let end = i + 1 + input[i + 1..].iter().position(|&c| c == b'-')?;
        let run = &input[i + 1..end];
        i = end + 1;
        if run.is_empty() {
            out.push('&');
            continue;
        }
        let mut bits = 0u32;
        let mut nbits = 0;
        let mut units = Vec::with_capacity(run.len() * 6 / 16);
        for &c in run {
            bits = (bits << 6) | value(c)?;
            nbits += 6;
            if nbits >= 16 {
                nbits -= 16;
                units.push((bits >> nbits) as u16);
                bits &= (1 << nbits) - 1;
            }
        }
        if nbits >= 6 || bits != 0 || units.is_empty() {
            return None;
        }
        for ch in char::decode_utf16(units) {
            let ch = ch.ok()?;
            if (' '..='~').contains(&ch) {
                return None;
            }
            out.push(ch);
        }
    }
    Some(out)
}

/// Encodes a name to modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        out.push('&');
        let mut bits = 0u32;
        let mut nbits = 0;
        for &u in pending.iter() {
            bits = (bits << 16) | u32::from(u);
            nbits += 16;
            while nbits >= 6 {
                nbits -= 6;
                out.push(char::from(ALPHABET[((bits >> nbits) & 63) as usize]));
            }
            bits &= (1 << nbits) - 1;
        }
        if nbits > 0 {
            out.push(char::from(ALPHABET[((bits << (6 - nbits)) & 63) as usize]));
        }
        out.push('-');
        pending.clear();
    };
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut pending, &mut out);
            out.push(ch);
            if ch == '&' {
                out.push('-');
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3501_example() {
        let wire = "~peter/mail/&U,BTFw-/&ZeVnLIqe-";
        let name = decode(wire.as_bytes()).unwrap();
        assert_eq!(name, "~peter/mail/台北/日本語");
        assert_eq!(encode(&name), wire);
    }

    #[test]
    fn ampersand_and_errors() {
        assert_eq!(decode(b"A&-B").unwrap(), "A&B");
        assert_eq!(encode("A&B"), "A&-B");
        assert_eq!(decode(b"&AGE-"), None, "ASCII in base64");
        assert_eq!(decode(b"&U,BTF"), None, "unterminated");
        assert_eq!(decode(b"&2D0-"), None, "lone surrogate");
        assert_eq!(decode("é".as_bytes()), None, "8-bit");
        assert_eq!(encode("😀"), "&2D3eAA-");
        assert_eq!(decode(b"&2D3eAA-").unwrap(), "😀");
    }
}
