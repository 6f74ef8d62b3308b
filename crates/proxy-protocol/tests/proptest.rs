//! Properties of the decoder on arbitrary input and of encode → decode.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use mailfleet_proxy_protocol::{
    Decoded, ProxyHeader, V1_MAX_LEN, V1_SIGNATURE, V2_MAX_LEN, V2_SIGNATURE, decode, encode_v1,
    encode_v2, encode_v2_local,
};
use proptest::prelude::*;

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn any_addr() -> impl Strategy<Value = SocketAddr> {
    (any_ip(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port))
}

/// Arbitrary bytes, often starting with a signature so the fuzzing reaches past the first byte.
fn fuzz_input() -> impl Strategy<Value = Vec<u8>> {
    let tail = proptest::collection::vec(any::<u8>(), 0..200);
    prop_oneof![
        tail.clone(),
        tail.clone().prop_map(|t| [&V1_SIGNATURE[..], &t].concat()),
        (
            proptest::sample::select(vec!["TCP4 ", "TCP6 ", "UNKNOWN", "TCP4 1.2.3.4 "]),
            "[0-9a-fA-F:. \r\n]{0,110}"
        )
            .prop_map(|(p, t)| [&V1_SIGNATURE[..], p.as_bytes(), t.as_bytes()].concat()),
        tail.prop_map(|t| [&V2_SIGNATURE[..], &t].concat()),
        (
            any::<u8>(),
            any::<u8>(),
            0u16..300,
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(vc, fam, len, t)| {
                let mut out = V2_SIGNATURE.to_vec();
                out.extend_from_slice(&[0x20 | (vc & 0x0f), fam]);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&t);
                out
            }),
    ]
}

/// Whether the canonical form of `h` (both IPv4, or both IPv6 with IPv4 mapped) equals `got`.
fn same_as_encoded(src: SocketAddr, dst: SocketAddr, got: ProxyHeader) -> bool {
    let v6 = |a: SocketAddr| {
        let ip: Ipv6Addr = match a.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        SocketAddr::new(IpAddr::V6(ip), a.port())
    };
    if src.is_ipv4() && dst.is_ipv4() {
        got == ProxyHeader {
            source: src,
            destination: dst,
            tls: None,
        }
    } else {
        got == ProxyHeader {
            source: v6(src),
            destination: v6(dst),
            tls: None,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn decode_never_panics_and_is_consistent(buf in fuzz_input()) {
        match decode(&buf) {
            Ok(Decoded::Header { header, consumed }) => {
                prop_assert!(consumed <= buf.len());
                prop_assert!(consumed <= V1_MAX_LEN.max(V2_MAX_LEN));
                // The header alone decodes to the same, and nothing shorter is complete.
                prop_assert_eq!(
                    decode(&buf[..consumed]).unwrap(),
                    Decoded::Header { header, consumed }
                );
                prop_assert_eq!(decode(&buf[..consumed - 1]).unwrap(), Decoded::Incomplete);
            }
            Ok(Decoded::Incomplete) => {
                prop_assert!(buf.len() < V2_MAX_LEN);
                // Every prefix of an incomplete header is incomplete too.
                for n in 0..buf.len() {
                    prop_assert_eq!(decode(&buf[..n]).unwrap(), Decoded::Incomplete);
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn v1_round_trip(src in any_addr(), dst in any_addr(), suffix in proptest::collection::vec(any::<u8>(), 0..20)) {
        let header = encode_v1(src, dst);
        prop_assert!(header.len() <= V1_MAX_LEN);
        let input = [&header[..], &suffix].concat();
        let Decoded::Header { header: Some(got), consumed } = decode(&input).unwrap() else {
            panic!("no header");
        };
        prop_assert_eq!(consumed, header.len());
        prop_assert!(same_as_encoded(src, dst, got));
        for n in 0..header.len() {
            prop_assert_eq!(decode(&header[..n]).unwrap(), Decoded::Incomplete);
        }
    }

    #[test]
    fn v2_round_trip(src in any_addr(), dst in any_addr(), suffix in proptest::collection::vec(any::<u8>(), 0..20)) {
        let header = encode_v2(src, dst);
        let input = [&header[..], &suffix].concat();
        let Decoded::Header { header: Some(got), consumed } = decode(&input).unwrap() else {
            panic!("no header");
        };
        prop_assert_eq!(consumed, header.len());
        prop_assert!(same_as_encoded(src, dst, got));
        for n in 0..header.len() {
            prop_assert_eq!(decode(&header[..n]).unwrap(), Decoded::Incomplete);
        }
    }

    #[test]
    fn v2_local_ignores_what_follows(suffix in proptest::collection::vec(any::<u8>(), 0..64)) {
        let input = [&encode_v2_local()[..], &suffix].concat();
        prop_assert_eq!(decode(&input).unwrap(), Decoded::Header { header: None, consumed: 16 });
    }
}

/// Hands out `data` in reads no larger than the next of `chunks` (cycling), and remembers how much
/// was taken.
struct Chunked {
    data: Vec<u8>,
    pos: usize,
    chunks: Vec<usize>,
    turn: usize,
}

impl tokio::io::AsyncRead for Chunked {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let chunk = self.chunks[self.turn % self.chunks.len()];
        self.turn += 1;
        let n = chunk.min(buf.remaining()).min(self.data.len() - self.pos);
        let start = self.pos;
        buf.put_slice(&self.data[start..start + n]);
        self.pos += n;
        std::task::Poll::Ready(Ok(()))
    }
}

/// Valid headers of every kind, some with TLVs.
fn valid_header() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (any_addr(), any_addr()).prop_map(|(s, d)| encode_v1(s, d)),
        (any_addr(), any_addr()).prop_map(|(s, d)| encode_v2(s, d)),
        (
            any_addr(),
            any_addr(),
            proptest::option::of("[ -~]{0,80}"),
            proptest::option::of("[ -~]{0,80}")
        )
            .prop_map(|(s, d, version, cipher)| {
                mailfleet_proxy_protocol::encode_v2_tls(
                    s,
                    d,
                    &mailfleet_proxy_protocol::ClientTls { version, cipher },
                )
            }),
        Just(encode_v2_local()),
        Just(b"PROXY UNKNOWN\r\n".to_vec()),
        (
            any_addr(),
            any_addr(),
            proptest::collection::vec(
                // Any kind but CRC32C (0x03), whose value must be the header's checksum.
                (
                    any::<u8>().prop_map(|k| if k == 0x03 { 0x04 } else { k }),
                    proptest::collection::vec(any::<u8>(), 0..40)
                ),
                0..5
            )
        )
            .prop_map(|(s, d, tlvs)| {
                let mut out = encode_v2(s, d);
                for (kind, value) in tlvs {
                    out.push(kind);
                    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
                    out.extend_from_slice(&value);
                }
                let len = (out.len() - 16) as u16;
                out[14..16].copy_from_slice(&len.to_be_bytes());
                out
            }),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match *m {
            Mutation::Flip(i, x) if len > 0 => bytes[i % len] ^= x,
            Mutation::Truncate(i) => bytes.truncate(i % (len + 1)),
            Mutation::Insert(i, b) => bytes.insert(i % (len + 1), b),
            Mutation::Remove(i) if len > 0 => {
                bytes.remove(i % len);
            }
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Whatever the read sizes, `read_header` gives what `decode` gives and takes exactly the
    /// header's bytes from the stream.
    #[test]
    fn read_header_takes_exactly_the_header(
        header in valid_header(),
        suffix in proptest::collection::vec(any::<u8>(), 0..32),
        chunks in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let Decoded::Header { header: expected, consumed } = decode(&header).unwrap() else {
            panic!("valid header did not decode");
        };
        prop_assert_eq!(consumed, header.len());
        let mut stream = Chunked { data: [&header[..], &suffix].concat(), pos: 0, chunks, turn: 0 };
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let got = rt.block_on(mailfleet_proxy_protocol::read_header(
            &mut stream,
            std::time::Duration::from_secs(5),
        ));
        prop_assert_eq!(got.unwrap(), expected);
        prop_assert_eq!(stream.pos, header.len());
    }

    /// Mutated valid headers: decode never panics, and when it accepts, what it accepted is
    /// self-consistent and within bounds; `read_header` agrees with `decode`.
    #[test]
    fn mutated_headers(header in valid_header(), mutations in proptest::collection::vec(mutation(), 1..4)) {
        let bytes = apply(header, &mutations);
        let decoded = decode(&bytes);
        if let Ok(Decoded::Header { header, consumed }) = &decoded {
            prop_assert!(*consumed <= bytes.len());
            prop_assert_eq!(
                decode(&bytes[..*consumed]).unwrap(),
                Decoded::Header { header: header.clone(), consumed: *consumed }
            );
        }
        let mut stream = Chunked { data: bytes.clone(), pos: 0, chunks: vec![7, 1, 3], turn: 0 };
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let got = rt.block_on(mailfleet_proxy_protocol::read_header(
            &mut stream,
            std::time::Duration::from_secs(5),
        ));
        match (decoded, got) {
            (Ok(Decoded::Header { header, consumed }), Ok(h)) => {
                prop_assert_eq!(h, header);
                prop_assert_eq!(stream.pos, consumed);
            }
            // The stream ends where the bytes end: incomplete input is a closed connection.
            (Ok(Decoded::Incomplete), Err(mailfleet_proxy_protocol::ProxyError::Closed { received })) => {
                prop_assert_eq!(received, bytes.len());
            }
            (Err(_), Err(_)) => {}
            (d, g) => prop_assert!(false, "decode {:?} but read_header {:?}", d, g),
        }
    }
}
