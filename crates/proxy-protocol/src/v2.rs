//! PROXY protocol version 2: a binary block.
//!
//! 12-byte signature, one byte version (high nibble, always 2) and command (low nibble: 0 LOCAL,
//! 1 PROXY), one byte address family (high nibble) and transport (low nibble), a big-endian u16
//! length of what follows: the addresses, then TLVs (type, u16 length, value) which mailfleet
//! checks for framing and otherwise skips, except two. PP2_TYPE_CRC32C: when the sender added
//! one, the header's checksum must match or the header is refused. PP2_TYPE_SSL: the client's
//! connection to the proxy was TLS (the proxy terminated it); its version and cipher sub-TLVs
//! are kept, in [`ClientTls`]. An SSL TLV whose inside cannot be read says nothing (plain).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::{ClientTls, Decoded, ProxyError, ProxyHeader, check_signature};

/// Every v2 header starts with these bytes.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// The longest v2 header mailfleet accepts, fixed part, addresses and TLVs included.
pub const V2_MAX_LEN: usize = 4096;

/// Signature, version/command, family/transport, length.
const FIXED_LEN: usize = 16;
const CMD_LOCAL: u8 = 0x0;
const CMD_PROXY: u8 = 0x1;
const TCP4: u8 = 0x11;
const TCP6: u8 = 0x21;
const IPV4_BLOCK: usize = 12;
const IPV6_BLOCK: usize = 36;
/// Family/transport bytes the protocol defines: UNSPEC, TCP/UDP over IPv4 and IPv6, UNIX
/// stream/datagram.
const KNOWN_FAMILIES: [u8; 7] = [0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32];
/// PP2_TYPE_CRC32C: a CRC-32C (Castagnoli) of the whole header, computed with this value zeroed.
const TLV_CRC32C: u8 = 0x03;
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
/// PP2_TYPE_SSL: a client flags byte, a u32 verify result, then sub-TLVs.
const TLV_SSL: u8 = 0x20;
/// PP2_CLIENT_SSL: the client connected over SSL/TLS.
const CLIENT_SSL: u8 = 0x01;
/// PP2_SUBTYPE_SSL_VERSION and PP2_SUBTYPE_SSL_CIPHER: US-ASCII strings.
const SUB_SSL_VERSION: u8 = 0x21;
const SUB_SSL_CIPHER: u8 = 0x23;
/// A version or cipher name longer than this is cut (the names are short; the header is
/// bounded anyway).
const MAX_TLS_NAME: usize = 64;

fn malformed(reason: impl Into<String>) -> ProxyError {
    ProxyError::malformed(2, reason)
}

pub(crate) fn decode(buf: &[u8]) -> Result<Decoded, ProxyError> {
    if !check_signature(buf, V2_SIGNATURE)? {
        return Ok(Decoded::Incomplete);
    }
    // Judge each byte as soon as it is there, so garbage is refused without waiting for more.
    let Some(&ver_cmd) = buf.get(12) else {
        return Ok(Decoded::Incomplete);
    };
    if ver_cmd >> 4 != 2 {
        return Err(malformed(format!("version {} (expected 2)", ver_cmd >> 4)));
    }
    let command = ver_cmd & 0x0f;
    if command != CMD_LOCAL && command != CMD_PROXY {
        return Err(malformed(format!(
            "command {command} (expected 0 LOCAL or 1 PROXY)"
        )));
    }
    let Some(&family) = buf.get(13) else {
        return Ok(Decoded::Incomplete);
    };
    // A LOCAL header's family is to be ignored.
    if command == CMD_PROXY && !KNOWN_FAMILIES.contains(&family) {
        return Err(malformed(format!(
            "unknown address family/transport byte 0x{family:02x}"
        )));
    }
    let (Some(&hi), Some(&lo)) = (buf.get(14), buf.get(15)) else {
        return Ok(Decoded::Incomplete);
    };
    let total = FIXED_LEN + usize::from(u16::from_be_bytes([hi, lo]));
    if total > V2_MAX_LEN {
        return Err(ProxyError::TooLong {
            version: 2,
            len: total,
            max: V2_MAX_LEN,
        });
    }
    let Some(body) = buf.get(FIXED_LEN..total) else {
        return Ok(Decoded::Incomplete);
    };
    let header = if command == CMD_LOCAL {
        None
    } else {
        parse_addresses(family, body, &buf[..total])?
    };
    Ok(Decoded::Header {
        header,
        consumed: total,
    })
}

/// `whole` is the complete header (fixed part included), for the checksum.
fn parse_addresses(
    family: u8,
    body: &[u8],
    whole: &[u8],
) -> Result<Option<ProxyHeader>, ProxyError> {
    let block = match family {
        TCP4 => IPV4_BLOCK,
        TCP6 => IPV6_BLOCK,
        // UNSPEC, UDP and UNIX carry no TCP client address: the connection's own addresses apply.
        _ => return Ok(None),
    };
    let Some((addrs, tlvs)) = body.split_at_checked(block) else {
        return Err(malformed(format!(
            "address block of {} bytes is shorter than the {block} bytes family 0x{family:02x} needs",
            body.len()
        )));
    };
    let (source, destination) = if family == TCP4 {
        let ip = |at: usize| IpAddr::V4(Ipv4Addr::from(be_array::<4>(addrs, at)));
        let port = |at: usize| u16::from_be_bytes(be_array::<2>(addrs, at));
        (
            SocketAddr::new(ip(0), port(8)),
            SocketAddr::new(ip(4), port(10)),
        )
    } else {
        let ip = |at: usize| IpAddr::V6(Ipv6Addr::from(be_array::<16>(addrs, at)));
        let port = |at: usize| u16::from_be_bytes(be_array::<2>(addrs, at));
        (
            SocketAddr::new(ip(0), port(32)),
            SocketAddr::new(ip(16), port(34)),
        )
    };
    let tls = check_tlvs(tlvs, whole)?;
    Ok(Some(ProxyHeader {
        source,
        destination,
        tls,
    }))
}

/// `N` bytes of `bytes` from `at`; callers have checked the length, missing bytes read as zero.
fn be_array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = bytes.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

/// Walks the TLVs after the addresses, checking that they exactly fill the rest of the header
/// (`whole`, which ends with them) and that a CRC32C TLV matches the header; returns what an SSL
/// TLV says of the client's TLS.
fn check_tlvs(tlvs: &[u8], whole: &[u8]) -> Result<Option<ClientTls>, ProxyError> {
    let mut tls = None;
    let mut rest = tlvs;
    while !rest.is_empty() {
        let [kind, hi, lo, ..] = *rest else {
            return Err(malformed(format!(
                "{} trailing bytes are too short for a TLV",
                rest.len()
            )));
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let after = rest.get(3 + len..).ok_or_else(|| {
            malformed(format!(
                "TLV of type 0x{kind:02x} claims {len} bytes, only {} remain",
                rest.len() - 3
            ))
        })?;
        if kind == TLV_CRC32C {
            // The value's offset in the whole header: the TLVs are its tail.
            let at = whole.len() - rest.len() + 3;
            check_crc32c(whole, at, len)?;
        }
        if kind == TLV_SSL {
            tls = parse_ssl(&rest[3..3 + len]);
        }
        rest = after;
    }
    Ok(tls)
}

/// The value of a PP2_TYPE_SSL TLV: None unless its client flags say the client used TLS. A
/// value whose inner framing is broken says nothing either: the header is still taken (its
/// framing was checked like any TLV's) and the session counts as plain, the safe side.
fn parse_ssl(value: &[u8]) -> Option<ClientTls> {
    let (&client, after_client) = value.split_first()?;
    let mut subs = after_client.get(4..)?;
    if client & CLIENT_SSL == 0 {
        return None;
    }
    let mut tls = ClientTls::default();
    while !subs.is_empty() {
        let [kind, hi, lo, ..] = *subs else {
            return None;
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let v = subs.get(3..3 + len)?;
        let text = || {
            let v = &v[..v.len().min(MAX_TLS_NAME)];
            Some(
                v.iter()
                    .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
                    .collect(),
            )
        };
        match kind {
            SUB_SSL_VERSION => tls.version = text(),
            SUB_SSL_CIPHER => tls.cipher = text(),
            _ => {}
        }
        subs = &subs[3 + len..];
    }
    Some(tls)
}

/// Compares the CRC32C value of `len` bytes at `at` in `whole` with the checksum of `whole`
/// computed with those bytes as zero.
fn check_crc32c(whole: &[u8], at: usize, len: usize) -> Result<(), ProxyError> {
    if len != 4 {
        return Err(malformed(format!("CRC32C TLV of {len} bytes (expected 4)")));
    }
    let sent = u32::from_be_bytes(be_array::<4>(whole, at));
    let mut digest = CRC32C.digest();
    digest.update(&whole[..at]);
    digest.update(&[0; 4]);
    digest.update(&whole[at + 4..]);
    let computed = digest.finalize();
    if computed != sent {
        return Err(malformed(format!(
            "CRC32C mismatch: header says 0x{sent:08x}, its bytes give 0x{computed:08x}"
        )));
    }
    Ok(())
}

#[cfg(feature = "tokio")]
pub(crate) fn min_more(buf: &[u8]) -> usize {
    match (buf.get(14), buf.get(15)) {
        (Some(&hi), Some(&lo)) => {
            let total = FIXED_LEN + usize::from(u16::from_be_bytes([hi, lo]));
            total.saturating_sub(buf.len()).max(1)
        }
        _ => FIXED_LEN.saturating_sub(buf.len()).max(1),
    }
}

/// Builds a v2 PROXY-command header for a TCP connection from `source` to `destination`, without
/// TLVs. If the two addresses are of different families, the IPv4 one is written as an
/// IPv4-mapped IPv6 address.
pub fn encode_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(FIXED_LEN + IPV6_BLOCK);
    out.extend_from_slice(V2_SIGNATURE);
    out.push(0x20 | CMD_PROXY);
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(TCP4);
            out.extend_from_slice(&(IPV4_BLOCK as u16).to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            out.push(TCP6);
            out.extend_from_slice(&(IPV6_BLOCK as u16).to_be_bytes());
            out.extend_from_slice(&crate::v1::to_v6(s).octets());
            out.extend_from_slice(&crate::v1::to_v6(d).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

/// [`encode_v2`] with a PP2_TYPE_SSL TLV saying that the client's connection to the proxy was
/// TLS (verified: no client certificate was asked for), with its version and cipher when known.
pub fn encode_v2_tls(source: SocketAddr, destination: SocketAddr, tls: &ClientTls) -> Vec<u8> {
    let mut out = encode_v2(source, destination);
    let mut subs = Vec::new();
    for (kind, name) in [
        (SUB_SSL_VERSION, &tls.version),
        (SUB_SSL_CIPHER, &tls.cipher),
    ] {
        if let Some(name) = name {
            let name = &name.as_bytes()[..name.len().min(MAX_TLS_NAME)];
            subs.push(kind);
            subs.extend_from_slice(&(name.len() as u16).to_be_bytes());
            subs.extend_from_slice(name);
        }
    }
    let value_len = 1 + 4 + subs.len();
    out.push(TLV_SSL);
    out.extend_from_slice(&(value_len as u16).to_be_bytes());
    out.push(CLIENT_SSL);
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&subs);
    // The length field counts everything after the fixed part.
    let body = (out.len() - FIXED_LEN) as u16;
    out[14..16].copy_from_slice(&body.to_be_bytes());
    out
}

/// Builds a v2 LOCAL-command header: the connection was made by the balancer itself (a health
/// check) and carries no client address.
pub fn encode_v2_local() -> Vec<u8> {
    let mut out = Vec::with_capacity(FIXED_LEN);
    out.extend_from_slice(V2_SIGNATURE);
    out.push(0x20 | CMD_LOCAL);
    out.push(0x00);
    out.extend_from_slice(&0u16.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A header with the given version/command, family and body; the length field is the body's.
    fn raw(ver_cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(ver_cmd);
        out.push(family);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn v4_body() -> Vec<u8> {
        vec![192, 0, 2, 1, 198, 51, 100, 7, 0xc8, 0x22, 0, 25]
    }

    fn v4_header() -> Option<ProxyHeader> {
        Some(ProxyHeader {
            source: sa("192.0.2.1:51234"),
            destination: sa("198.51.100.7:25"),
            tls: None,
        })
    }

    fn assert_malformed(input: &[u8], needle: &str) {
        match decode(input) {
            Err(ProxyError::Malformed { version: 2, reason }) => {
                assert!(
                    reason.contains(needle),
                    "reason {reason:?} lacks {needle:?}"
                )
            }
            other => panic!("expected malformed ({needle}), got {other:?}"),
        }
    }

    #[test]
    fn tcp4_exact_bytes() {
        let mut input = raw(0x21, 0x11, &v4_body());
        assert_eq!(
            input,
            encode_v2(sa("192.0.2.1:51234"), sa("198.51.100.7:25"))
        );
        input.extend_from_slice(b"EHLO x\r\n");
        assert_eq!(
            decode(&input).unwrap(),
            Decoded::Header {
                header: v4_header(),
                consumed: 28
            }
        );
    }

    #[test]
    fn tcp6() {
        let src = sa("[2001:db8::1]:1234");
        let dst = sa("[2001:db8::2]:993");
        let bytes = encode_v2(src, dst);
        assert_eq!(bytes.len(), 16 + 36);
        assert_eq!(bytes[13], 0x21);
        assert_eq!(
            decode(&bytes).unwrap(),
            Decoded::Header {
                header: Some(ProxyHeader {
                    source: src,
                    destination: dst,
                    tls: None,
                }),
                consumed: 52
            }
        );
    }

    #[test]
    fn mixed_families_map_v4_to_v6() {
        let bytes = encode_v2(sa("192.0.2.1:1"), sa("[2001:db8::2]:2"));
        let Decoded::Header {
            header: Some(h), ..
        } = decode(&bytes).unwrap()
        else {
            panic!("no header");
        };
        assert_eq!(h.source, sa("[::ffff:192.0.2.1]:1"));
        assert_eq!(h.destination, sa("[2001:db8::2]:2"));
    }

    #[test]
    fn local() {
        let bytes = encode_v2_local();
        assert_eq!(bytes, raw(0x20, 0x00, &[]));
        assert_eq!(
            decode(&bytes).unwrap(),
            Decoded::Header {
                header: None,
                consumed: 16
            }
        );
        // LOCAL ignores the family byte and whatever address block follows.
        let odd = raw(0x20, 0xff, &[1, 2, 3]);
        assert_eq!(
            decode(&odd).unwrap(),
            Decoded::Header {
                header: None,
                consumed: 19
            }
        );
    }

    #[test]
    fn families_without_tcp_address_give_none() {
        for family in [0x00, 0x12, 0x22, 0x31, 0x32] {
            let body = vec![7u8; 216];
            assert_eq!(
                decode(&raw(0x21, family, &body)).unwrap(),
                Decoded::Header {
                    header: None,
                    consumed: 16 + 216
                },
                "family {family:#x}"
            );
        }
        assert_eq!(
            decode(&raw(0x21, 0x00, &[])).unwrap(),
            Decoded::Header {
                header: None,
                consumed: 16
            }
        );
    }

    #[test]
    fn tlvs_are_skipped() {
        let mut body = v4_body();
        body.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']); // ALPN
        body.extend_from_slice(&[0x04, 0x00, 0x00]); // NOOP, empty
        body.extend_from_slice(&[0xEA, 0x00, 0x03, 1, 2, 3]); // custom
        let input = raw(0x21, 0x11, &body);
        assert_eq!(
            decode(&input).unwrap(),
            Decoded::Header {
                header: v4_header(),
                consumed: input.len()
            }
        );
    }

    /// A TCP4 header whose TLVs end with a CRC32C over the whole; `spoil` alters it after.
    fn with_crc(spoil: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut body = v4_body();
        body.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']);
        body.extend_from_slice(&[TLV_CRC32C, 0x00, 0x04, 0, 0, 0, 0]);
        let mut input = raw(0x21, 0x11, &body);
        let crc = CRC32C.checksum(&input);
        let at = input.len() - 4;
        input[at..].copy_from_slice(&crc.to_be_bytes());
        spoil(&mut input);
        input
    }

    #[test]
    fn crc32c_is_checked_when_present() {
        let good = with_crc(|_| {});
        assert_eq!(
            decode(&good).unwrap(),
            Decoded::Header {
                header: v4_header(),
                consumed: good.len()
            }
        );
        // A changed source port, or a changed checksum, no longer matches.
        assert_malformed(&with_crc(|h| h[25] ^= 1), "CRC32C mismatch");
        assert_malformed(
            &with_crc(|h| *h.last_mut().unwrap() ^= 0x80),
            "CRC32C mismatch",
        );
        // Known value of CRC-32C: the check value of the standard test string.
        assert_eq!(CRC32C.checksum(b"123456789"), 0xE306_9283);
        let mut body = v4_body();
        body.extend_from_slice(&[TLV_CRC32C, 0x00, 0x02, 0, 0]);
        assert_malformed(&raw(0x21, 0x11, &body), "CRC32C TLV of 2 bytes");
    }

    #[test]
    fn broken_tlvs() {
        let mut body = v4_body();
        body.extend_from_slice(&[0x01, 0x00]);
        assert_malformed(&raw(0x21, 0x11, &body), "too short for a TLV");
        let mut body = v4_body();
        body.extend_from_slice(&[0x01, 0x00, 0x05, b'a']);
        assert_malformed(&raw(0x21, 0x11, &body), "claims 5 bytes, only 1 remain");
    }

    fn header_of(bytes: &[u8]) -> ProxyHeader {
        match decode(bytes).unwrap() {
            Decoded::Header {
                header: Some(h),
                consumed,
            } => {
                assert_eq!(consumed, bytes.len());
                h
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ssl_tlv_round_trips() {
        let tls = ClientTls {
            version: Some("TLSv1.3".into()),
            cipher: Some("TLS13_AES_256_GCM_SHA384".into()),
        };
        for (src, dst) in [
            ("192.0.2.1:51234", "198.51.100.7:993"),
            ("[2001:db8::1]:40000", "[2001:db8::2]:993"),
        ] {
            let h = header_of(&encode_v2_tls(sa(src), sa(dst), &tls));
            assert_eq!((h.source, h.destination), (sa(src), sa(dst)));
            assert_eq!(h.tls.as_ref(), Some(&tls));
        }
        // Without names the TLV still says TLS.
        let h = header_of(&encode_v2_tls(
            sa("192.0.2.1:1"),
            sa("192.0.2.2:2"),
            &ClientTls::default(),
        ));
        assert_eq!(h.tls, Some(ClientTls::default()));
        // A plain header says nothing of TLS.
        assert_eq!(
            header_of(&encode_v2(sa("192.0.2.1:1"), sa("192.0.2.2:2"))).tls,
            None
        );
    }

    #[test]
    fn ssl_tlv_without_the_client_flag_is_not_tls() {
        let mut body = v4_body();
        // Client flags 0 (not SSL), verify 0, a version sub-TLV all the same.
        body.extend_from_slice(&[TLV_SSL, 0x00, 0x0a, 0x00, 0, 0, 0, 0]);
        body.extend_from_slice(&[SUB_SSL_VERSION, 0x00, 0x02, b'v', b'1']);
        assert_eq!(header_of(&raw(0x21, 0x11, &body)).tls, None);
    }

    #[test]
    fn ssl_tlv_names_are_printable_and_bounded() {
        let mut body = v4_body();
        let long = vec![b'x'; 100];
        let value_len = 1 + 4 + (3 + 3) + (3 + long.len());
        body.extend_from_slice(&[TLV_SSL]);
        body.extend_from_slice(&(value_len as u16).to_be_bytes());
        body.extend_from_slice(&[CLIENT_SSL, 0, 0, 0, 0]);
        body.extend_from_slice(&[SUB_SSL_VERSION, 0x00, 0x03, b'v', 0x07, b'\n']);
        body.extend_from_slice(&[SUB_SSL_CIPHER, 0x00, long.len() as u8]);
        body.extend_from_slice(&long);
        let tls = header_of(&raw(0x21, 0x11, &body)).tls.unwrap();
        assert_eq!(tls.version.as_deref(), Some("v??"));
        assert_eq!(tls.cipher.map(|c| c.len()), Some(MAX_TLS_NAME));
    }

    #[test]
    fn broken_ssl_tlvs_say_nothing_of_tls() {
        // The header is taken (its TLV framing is sound); the session is not TLS.
        for value in [
            &[][..],
            &[CLIENT_SSL, 0, 0][..],
            &[CLIENT_SSL, 0, 0, 0, 0, SUB_SSL_VERSION, 0x00, 0x05][..],
            &[CLIENT_SSL, 0, 0, 0, 0, 0x21, 0x00][..],
        ] {
            let mut body = v4_body();
            body.push(TLV_SSL);
            body.extend_from_slice(&(value.len() as u16).to_be_bytes());
            body.extend_from_slice(value);
            assert_eq!(header_of(&raw(0x21, 0x11, &body)).tls, None, "{value:?}");
        }
    }

    #[test]
    fn bad_fixed_part() {
        assert_malformed(&raw(0x11, 0x11, &v4_body()), "version 1");
        assert_malformed(&raw(0x31, 0x11, &v4_body()), "version 3");
        assert_malformed(&raw(0x22, 0x11, &v4_body()), "command 2");
        assert_malformed(&raw(0x2f, 0x11, &v4_body()), "command 15");
        for family in [0x01, 0x10, 0x13, 0x23, 0x30, 0x33, 0x41, 0xff] {
            assert_malformed(&raw(0x21, family, &v4_body()), "family/transport");
        }
        assert_malformed(
            &raw(0x21, 0x11, &v4_body()[..11]),
            "shorter than the 12 bytes",
        );
        assert_malformed(&raw(0x21, 0x21, &v4_body()), "shorter than the 36 bytes");
        assert_malformed(&raw(0x21, 0x11, &[]), "shorter");
    }

    #[test]
    fn bad_bytes_are_refused_before_the_rest_arrives() {
        let v3 = raw(0x31, 0x11, &v4_body());
        assert!(decode(&v3[..13]).is_err());
        let bad_family = raw(0x21, 0x44, &v4_body());
        assert!(decode(&bad_family[..14]).is_err());
        // A length over the limit is refused as soon as the length field is complete.
        let mut long = raw(0x21, 0x11, &[]);
        long[14..16].copy_from_slice(&4081u16.to_be_bytes());
        assert!(matches!(
            decode(&long[..16]),
            Err(ProxyError::TooLong {
                version: 2,
                len: 4097,
                max: 4096
            })
        ));
        assert_eq!(decode(&long[..15]).unwrap(), Decoded::Incomplete);
    }

    #[test]
    fn longest_accepted_header() {
        let mut body = v4_body();
        let tlv_len = V2_MAX_LEN - 16 - 12 - 3;
        body.push(0xEE);
        body.extend_from_slice(&(tlv_len as u16).to_be_bytes());
        body.resize(body.len() + tlv_len, 0);
        let input = raw(0x21, 0x11, &body);
        assert_eq!(input.len(), V2_MAX_LEN);
        assert_eq!(
            decode(&input).unwrap(),
            Decoded::Header {
                header: v4_header(),
                consumed: V2_MAX_LEN
            }
        );
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let mut with_tlv = v4_body();
        with_tlv.extend_from_slice(&[0x02, 0x00, 0x01, b'x']);
        for input in [
            encode_v2(sa("192.0.2.1:1"), sa("192.0.2.2:2")),
            encode_v2(sa("[::1]:1"), sa("[::2]:2")),
            encode_v2_local(),
            raw(0x21, 0x11, &with_tlv),
        ] {
            for n in 0..input.len() {
                assert_eq!(
                    decode(&input[..n]).unwrap(),
                    Decoded::Incomplete,
                    "prefix {n}"
                );
            }
            assert!(matches!(
                decode(&input).unwrap(),
                Decoded::Header { consumed, .. } if consumed == input.len()
            ));
        }
    }

    #[test]
    fn wrong_signature() {
        let mut input = encode_v2_local();
        input[11] = b'X';
        assert!(matches!(decode(&input), Err(ProxyError::NotProxy)));
        assert!(matches!(decode(b"\r\n\r\nX"), Err(ProxyError::NotProxy)));
        assert!(matches!(decode(b"\r\n"), Ok(Decoded::Incomplete)));
    }
}
