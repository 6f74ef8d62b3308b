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
        }
    } else {
        got == ProxyHeader {
            source: v6(src),
            destination: v6(dst),
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
