//! PROXY protocol version 1: one text line.
//!
//! `PROXY TCP4 <src ip> <dst ip> <src port> <dst port>\r\n`, `PROXY TCP6 ...` or
//! `PROXY UNKNOWN[ anything]\r\n`, at most 107 bytes including the CRLF.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::{Decoded, ProxyError, ProxyHeader, check_signature};

/// Every v1 header starts with these bytes.
pub const V1_SIGNATURE: &[u8; 6] = b"PROXY ";

/// The longest v1 header, CRLF included, that a receiver must accept and that mailfleet accepts.
pub const V1_MAX_LEN: usize = 107;

/// The shortest v1 header: `PROXY UNKNOWN\r\n`.
#[cfg(feature = "tokio")]
pub(crate) const MIN_LEN: usize = 15;

fn malformed(reason: impl Into<String>) -> ProxyError {
    ProxyError::malformed(1, reason)
}

pub(crate) fn decode(buf: &[u8]) -> Result<Decoded, ProxyError> {
    if !check_signature(buf, V1_SIGNATURE)? {
        return Ok(Decoded::Incomplete);
    }
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let mut line_end = None;
    for (i, &b) in window.iter().enumerate().skip(V1_SIGNATURE.len()) {
        match b {
            b'\r' => match window.get(i + 1) {
                Some(b'\n') => {
                    line_end = Some(i);
                    break;
                }
                Some(_) => return Err(malformed("CR not followed by LF")),
                None => break,
            },
            b'\n' => return Err(malformed("LF without CR")),
            0x20..=0x7e => {}
            _ => return Err(malformed(format!("byte 0x{b:02x} is not printable ASCII"))),
        }
    }
    let Some(line_end) = line_end else {
        if buf.len() >= V1_MAX_LEN {
            return Err(ProxyError::TooLong {
                version: 1,
                len: buf.len(),
                max: V1_MAX_LEN,
            });
        }
        return Ok(Decoded::Incomplete);
    };
    // Only printable ASCII was accepted above, so this cannot fail; stay total anyway.
    let line = std::str::from_utf8(&window[V1_SIGNATURE.len()..line_end])
        .map_err(|_| malformed("not ASCII"))?;
    let header = parse_line(line)?;
    Ok(Decoded::Header {
        header,
        consumed: line_end + 2,
    })
}

/// Parses what follows `PROXY ` up to (without) the CRLF.
fn parse_line(line: &str) -> Result<Option<ProxyHeader>, ProxyError> {
    let mut fields = line.split(' ');
    let proto = fields.next().unwrap_or("");
    let v6 = match proto {
        // The rest of an UNKNOWN line carries nothing the receiver may rely on.
        "UNKNOWN" => return Ok(None),
        "TCP4" => false,
        "TCP6" => true,
        "" => return Err(malformed("missing protocol after \"PROXY \"")),
        other => {
            return Err(malformed(format!(
                "unknown protocol {:?}, expected TCP4, TCP6 or UNKNOWN",
                truncate(other)
            )));
        }
    };
    let mut next = |what: &str| -> Result<&str, ProxyError> {
        match fields.next() {
            Some("") => Err(malformed(format!(
                "empty {what} (fields are separated by one space)"
            ))),
            Some(f) => Ok(f),
            None => Err(malformed(format!("missing {what}"))),
        }
    };
    let src_ip = parse_ip(next("source address")?, v6, "source")?;
    let dst_ip = parse_ip(next("destination address")?, v6, "destination")?;
    let src_port = parse_port(next("source port")?, "source")?;
    let dst_port = parse_port(next("destination port")?, "destination")?;
    if fields.next().is_some() {
        return Err(malformed("unexpected field after the destination port"));
    }
    Ok(Some(ProxyHeader {
        source: SocketAddr::new(src_ip, src_port),
        destination: SocketAddr::new(dst_ip, dst_port),
        tls: None,
    }))
}

fn parse_ip(s: &str, v6: bool, which: &str) -> Result<IpAddr, ProxyError> {
    let parsed = if v6 {
        s.parse::<Ipv6Addr>().map(IpAddr::V6).ok()
    } else {
        s.parse::<Ipv4Addr>().map(IpAddr::V4).ok()
    };
    parsed.ok_or_else(|| {
        malformed(format!(
            "{which} address {:?} is not an {} address",
            truncate(s),
            if v6 { "IPv6" } else { "IPv4" }
        ))
    })
}

fn parse_port(s: &str, which: &str) -> Result<u16, ProxyError> {
    let bad = || {
        malformed(format!(
            "{which} port {:?} is not a number in 0..=65535",
            truncate(s)
        ))
    };
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    s.parse::<u16>().map_err(|_| bad())
}

/// Keeps quoted peer input in error messages short.
fn truncate(s: &str) -> &str {
    // Input here is ASCII (checked in `decode`), so any index is a char boundary; be safe anyway.
    s.get(..s.len().min(40)).unwrap_or(s)
}

#[cfg(feature = "tokio")]
pub(crate) fn min_more(buf: &[u8]) -> usize {
    if buf.len() < MIN_LEN {
        MIN_LEN - buf.len()
    } else if buf.last() == Some(&b'\r') {
        1
    } else {
        2
    }
}

/// Builds a v1 header for a TCP connection from `source` to `destination`. If the two addresses
/// are of different families, the IPv4 one is written as an IPv4-mapped IPv6 address (v1 requires
/// one family per line).
pub fn encode_v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let line = match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => format!(
            "PROXY TCP4 {s} {d} {} {}\r\n",
            source.port(),
            destination.port()
        ),
        (s, d) => format!(
            "PROXY TCP6 {} {} {} {}\r\n",
            to_v6(s),
            to_v6(d),
            source.port(),
            destination.port()
        ),
    };
    line.into_bytes()
}

pub(crate) fn to_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn header(src: &str, dst: &str) -> Option<ProxyHeader> {
        Some(ProxyHeader {
            source: sa(src),
            destination: sa(dst),
            tls: None,
        })
    }

    fn assert_malformed(input: &[u8], needle: &str) {
        match decode(input) {
            Err(ProxyError::Malformed { version: 1, reason }) => assert!(
                reason.contains(needle),
                "{:?}: reason {reason:?} lacks {needle:?}",
                String::from_utf8_lossy(input)
            ),
            other => panic!(
                "{:?}: expected malformed ({needle}), got {other:?}",
                String::from_utf8_lossy(input)
            ),
        }
    }

    #[test]
    fn tcp4() {
        let input = b"PROXY TCP4 192.0.2.1 198.51.100.7 51234 25\r\nEHLO x\r\n";
        assert_eq!(
            decode(input).unwrap(),
            Decoded::Header {
                header: header("192.0.2.1:51234", "198.51.100.7:25"),
                consumed: 44,
            }
        );
    }

    #[test]
    fn tcp6() {
        let input = b"PROXY TCP6 2001:db8::1 2001:db8::2:1 65535 0\r\n";
        assert_eq!(
            decode(input).unwrap(),
            Decoded::Header {
                header: header("[2001:db8::1]:65535", "[2001:db8::2:1]:0"),
                consumed: input.len(),
            }
        );
    }

    #[test]
    fn tcp6_with_v4_mapped_addresses() {
        let input = b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n";
        assert_eq!(
            decode(input).unwrap(),
            Decoded::Header {
                header: header("[::ffff:192.0.2.1]:1", "[::1]:2"),
                consumed: input.len(),
            }
        );
    }

    #[test]
    fn unknown_short_and_long_forms() {
        for input in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n",
            b"PROXY UNKNOWN whatever is here\r\n",
        ] {
            assert_eq!(
                decode(input).unwrap(),
                Decoded::Header {
                    header: None,
                    consumed: input.len()
                }
            );
        }
    }

    #[test]
    fn longest_tcp6_line_fits() {
        let line = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(line.len(), 104);
        assert!(matches!(
            decode(line).unwrap(),
            Decoded::Header {
                header: Some(_),
                consumed: 104
            }
        ));
    }

    #[test]
    fn line_of_exactly_107_bytes_is_accepted_108_is_not() {
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(105, b'x');
        line.extend_from_slice(b"\r\n");
        assert_eq!(line.len(), 107);
        assert_eq!(
            decode(&line).unwrap(),
            Decoded::Header {
                header: None,
                consumed: 107
            }
        );
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(106, b'x');
        long.extend_from_slice(b"\r\n");
        assert!(matches!(
            decode(&long),
            Err(ProxyError::TooLong {
                version: 1,
                max: 107,
                ..
            })
        ));
        // Without a CRLF, 107 bytes are enough to know it is too long.
        assert!(matches!(
            decode(&long[..107]),
            Err(ProxyError::TooLong { version: 1, .. })
        ));
        assert_eq!(decode(&long[..106]).unwrap(), Decoded::Incomplete);
    }

    #[test]
    fn every_prefix_is_incomplete() {
        for input in [
            &b"PROXY TCP4 192.0.2.1 198.51.100.7 51234 25\r\n"[..],
            b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n",
            b"PROXY UNKNOWN\r\n",
        ] {
            for n in 0..input.len() {
                assert_eq!(
                    decode(&input[..n]).unwrap(),
                    Decoded::Incomplete,
                    "prefix {n} of {:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn not_proxy() {
        for input in [
            &b"EHLO example.com\r\n"[..],
            b"P",
            b"PROXX",
            b"proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n",
            b"PROXYTCP4",
            b"GET / HTTP/1.1\r\n",
        ] {
            if input == b"P" {
                assert_eq!(decode(input).unwrap(), Decoded::Incomplete);
                continue;
            }
            assert!(
                matches!(decode(input), Err(ProxyError::NotProxy)),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn malformed_lines() {
        let cases: &[(&[u8], &str)] = &[
            (b"PROXY \r\n", "missing protocol"),
            (b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", "unknown protocol"),
            (b"PROXY tcp4 1.2.3.4 1.2.3.4 1 2\r\n", "unknown protocol"),
            (b"PROXY TCP4\r\n", "missing source address"),
            (b"PROXY TCP4 \r\n", "empty source address"),
            (b"PROXY TCP4 1.2.3.4\r\n", "missing destination address"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8\r\n", "missing source port"),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
                "missing destination port",
            ),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "unexpected field"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "unexpected field"),
            (
                b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
                "empty source address",
            ),
            (
                b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
                "empty destination address",
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n",
                "empty destination port",
            ),
            (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "source address"),
            (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "source address"),
            (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "not an IPv4"),
            (b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "destination address"),
            (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "not an IPv6"),
            (b"PROXY TCP6 ::1 ::g 1 2\r\n", "destination address"),
            (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "source address"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "source port"),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
                "destination port",
            ),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "source port"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "source port"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 0x10 2\r\n", "source port"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 000001 2\r\n", "source port"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "LF without CR"),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
                "CR not followed by LF",
            ),
            (b"PROXY TCP4\t1.2.3.4", "not printable"),
            (b"PROXY UNKNOWN \x00", "not printable"),
            (b"PROXY UNKNOWN \xc3\xa9\r\n", "not printable"),
        ];
        for (input, needle) in cases {
            assert_malformed(input, needle);
        }
    }

    #[test]
    fn error_message_is_clear() {
        let err = decode(b"PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed PROXY v1 header: source port \"70000\" is not a number in 0..=65535"
        );
    }

    #[test]
    fn encode_round_trips() {
        for (src, dst, family) in [
            ("192.0.2.1:51234", "198.51.100.7:25", "TCP4"),
            ("[2001:db8::1]:1", "[2001:db8::2]:993", "TCP6"),
            ("192.0.2.1:1", "[2001:db8::2]:2", "TCP6"),
            ("[2001:db8::1]:1", "192.0.2.2:2", "TCP6"),
            ("0.0.0.0:0", "255.255.255.255:65535", "TCP4"),
        ] {
            let bytes = encode_v1(sa(src), sa(dst));
            assert!(bytes.len() <= V1_MAX_LEN);
            assert!(bytes.starts_with(format!("PROXY {family} ").as_bytes()));
            let Decoded::Header {
                header: Some(h),
                consumed,
            } = decode(&bytes).unwrap()
            else {
                panic!("no header for {src} {dst}");
            };
            assert_eq!(consumed, bytes.len());
            let canon = |a: SocketAddr| SocketAddr::new(IpAddr::V6(to_v6(a.ip())), a.port());
            if family == "TCP4" {
                assert_eq!((h.source, h.destination), (sa(src), sa(dst)));
            } else {
                assert_eq!((h.source, h.destination), (canon(sa(src)), canon(sa(dst))));
            }
        }
    }

    #[test]
    fn encode_exact_bytes() {
        assert_eq!(
            encode_v1(sa("192.0.2.1:51234"), sa("198.51.100.7:25")),
            b"PROXY TCP4 192.0.2.1 198.51.100.7 51234 25\r\n"
        );
        assert_eq!(
            encode_v1(sa("192.0.2.1:1"), sa("[::1]:2")),
            b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n"
        );
    }
}
