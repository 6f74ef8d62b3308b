//! Wire formats, sans-IO: the heartbeat datagram and the state frame.
//!
//! Both are authenticated with keys derived from `pair.key` ([`PairKey`]); without a key
//! they are derived from the empty string, which still catches corruption and strays but
//! proves nothing about the sender.
//!
//! Heartbeat (UDP, 107 bytes, integers big-endian):
//! `"MFHB"`, version (2), flags, 2 reserved bytes, epoch (u64), nonce (u64),
//! state epoch (u64), state sequence (u64), address family (4 or 6), port (u16),
//! IP address (16 bytes, an IPv4 address in the first 4), sequence (u64, grows with every
//! heartbeat of one process), echo (u64: the nonce of the receiver as last heard from it,
//! 0 when none), then HMAC-SHA256 of everything before it (32 bytes).
//!
//! State frame (TCP, from the active to the passive): a header `"MFHS"`, version (2),
//! epoch (u64), sequence (u64), length of the snapshot (u64); then a 24-byte nonce and the
//! snapshot sealed with XChaCha20-Poly1305 (length + 16 bytes). The header and the
//! receiver's heartbeat nonce are the associated data, so a frame opens only for the
//! process it was sealed for, and the snapshot (which holds the balancer's configuration)
//! is not readable on the wire.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::Role;

const HEARTBEAT_MAGIC: &[u8; 4] = b"MFHB";
const STATE_MAGIC: &[u8; 4] = b"MFHS";
const VERSION: u8 = 2;

/// Length of the authenticated part of a heartbeat.
const HEARTBEAT_BODY_LEN: usize = 75;
/// Length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;
/// Length of an encoded heartbeat.
pub const HEARTBEAT_LEN: usize = HEARTBEAT_BODY_LEN + TAG_LEN;
/// Length of a state frame header.
pub const STATE_HEADER_LEN: usize = 29;
/// Bytes of a state frame after the header beyond the snapshot's length: the nonce and
/// the AEAD tag.
pub const STATE_SEAL_OVERHEAD: u64 = 24 + 16;
/// Largest snapshot a passive accepts (256 MiB).
pub const MAX_SNAPSHOT_LEN: u64 = 256 * 1024 * 1024;

const FLAG_ACTIVE: u8 = 1;
const FLAG_CONFIGURED_ACTIVE: u8 = 2;
const FLAG_HELLO: u8 = 4;
const FLAG_LEAVING: u8 = 8;

/// The version of a replicated snapshot: the active's epoch and a sequence number that
/// grows with every change within that epoch. `(0, 0)` means "nothing".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// Epoch of the active that produced the snapshot.
    pub epoch: u64,
    /// Change counter within the epoch, from 1.
    pub seq: u64,
}

/// One heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// The sender's current role.
    pub role: Role,
    /// Whether the sender's configured role is active (first tie-break after the epoch).
    pub configured_active: bool,
    /// The sender asks for an immediate heartbeat in return (it is starting).
    pub hello: bool,
    /// The sender is shutting down: count it as gone.
    pub leaving: bool,
    /// The sender's epoch: for an active, the epoch it became active in; for a passive,
    /// the highest epoch it knows of.
    pub epoch: u64,
    /// Random number chosen at start; last tie-break.
    pub nonce: u64,
    /// For an active: the version of its current snapshot; for a passive: the version it
    /// last applied.
    pub state: Version,
    /// The sender's configured `listen` address.
    pub listen: SocketAddr,
    /// Counts the sender's heartbeats (within one nonce): a receiver accepts each number
    /// once, so a recorded heartbeat cannot be played back.
    pub seq: u64,
    /// The receiver's nonce as the sender last heard it (0: not heard). A receiver takes a
    /// heartbeat as proof of life only when it echoes its own current nonce, so heartbeats
    /// recorded before the receiver started prove nothing.
    pub echo: u64,
}

type HmacSha256 = Hmac<Sha256>;

/// The pair's keys, derived from `pair.key`: one for heartbeat tags, one for sealing
/// state frames.
#[derive(Clone)]
pub struct PairKey {
    mac: [u8; 32],
    seal: [u8; 32],
}

impl std::fmt::Debug for PairKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairKey(..)")
    }
}

fn derive(secret: &[u8], label: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(label);
    mac.finalize().into_bytes().into()
}

impl PairKey {
    /// Derives the keys from the shared secret (`pair.key`; empty when unset).
    pub fn new(secret: &[u8]) -> PairKey {
        PairKey {
            mac: derive(secret, b"mailfleet pair heartbeat v2"),
            seal: derive(secret, b"mailfleet pair state v2"),
        }
    }

    fn heartbeat_mac(&self) -> HmacSha256 {
        <HmacSha256 as Mac>::new_from_slice(&self.mac)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.seal).into())
    }
}

/// Why a datagram or frame header was rejected.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Wrong length.
    #[error("wrong length {0}")]
    Length(usize),
    /// Not a mailfleet pair message.
    #[error("bad magic")]
    Magic,
    /// A version this build does not speak.
    #[error("unsupported version {0}")]
    Version(u8),
    /// The tag does not match: another key (pair.key differs), or altered in transit.
    #[error("authentication failed (is pair.key the same on both members?)")]
    Authentication,
    /// Unknown address family byte.
    #[error("bad address family {0}")]
    Family(u8),
    /// Snapshot length above [`MAX_SNAPSHOT_LEN`].
    #[error("snapshot of {0} bytes exceeds the limit")]
    TooLarge(u64),
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

impl Heartbeat {
    /// Encodes the heartbeat and appends its tag.
    pub fn encode(&self, key: &PairKey) -> [u8; HEARTBEAT_LEN] {
        let mut b = [0u8; HEARTBEAT_LEN];
        b[0..4].copy_from_slice(HEARTBEAT_MAGIC);
        b[4] = VERSION;
        let mut flags = 0;
        if self.role == Role::Active {
            flags |= FLAG_ACTIVE;
        }
        if self.configured_active {
            flags |= FLAG_CONFIGURED_ACTIVE;
        }
        if self.hello {
            flags |= FLAG_HELLO;
        }
        if self.leaving {
            flags |= FLAG_LEAVING;
        }
        b[5] = flags;
        b[8..16].copy_from_slice(&self.epoch.to_be_bytes());
        b[16..24].copy_from_slice(&self.nonce.to_be_bytes());
        b[24..32].copy_from_slice(&self.state.epoch.to_be_bytes());
        b[32..40].copy_from_slice(&self.state.seq.to_be_bytes());
        match self.listen.ip() {
            IpAddr::V4(ip) => {
                b[40] = 4;
                b[43..47].copy_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                b[40] = 6;
                b[43..59].copy_from_slice(&ip.octets());
            }
        }
        b[41..43].copy_from_slice(&self.listen.port().to_be_bytes());
        b[59..67].copy_from_slice(&self.seq.to_be_bytes());
        b[67..75].copy_from_slice(&self.echo.to_be_bytes());
        let mut mac = key.heartbeat_mac();
        mac.update(&b[..HEARTBEAT_BODY_LEN]);
        b[HEARTBEAT_BODY_LEN..].copy_from_slice(&mac.finalize().into_bytes());
        b
    }

    /// Decodes a datagram and checks its tag; never panics.
    pub fn decode(b: &[u8], key: &PairKey) -> Result<Heartbeat, WireError> {
        if b.len() != HEARTBEAT_LEN {
            return Err(WireError::Length(b.len()));
        }
        if &b[0..4] != HEARTBEAT_MAGIC {
            return Err(WireError::Magic);
        }
        if b[4] != VERSION {
            return Err(WireError::Version(b[4]));
        }
        let mut mac = key.heartbeat_mac();
        mac.update(&b[..HEARTBEAT_BODY_LEN]);
        // Constant-time comparison.
        mac.verify_slice(&b[HEARTBEAT_BODY_LEN..])
            .map_err(|_| WireError::Authentication)?;
        let flags = b[5];
        let port = u16::from_be_bytes([b[41], b[42]]);
        let ip = match b[40] {
            4 => IpAddr::V4(Ipv4Addr::new(b[43], b[44], b[45], b[46])),
            6 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(&b[43..59]);
                IpAddr::V6(Ipv6Addr::from(o))
            }
            f => return Err(WireError::Family(f)),
        };
        Ok(Heartbeat {
            role: if flags & FLAG_ACTIVE != 0 {
                Role::Active
            } else {
                Role::Passive
            },
            configured_active: flags & FLAG_CONFIGURED_ACTIVE != 0,
            hello: flags & FLAG_HELLO != 0,
            leaving: flags & FLAG_LEAVING != 0,
            epoch: u64_at(b, 8),
            nonce: u64_at(b, 16),
            state: Version {
                epoch: u64_at(b, 24),
                seq: u64_at(b, 32),
            },
            listen: SocketAddr::new(ip, port),
            seq: u64_at(b, 59),
            echo: u64_at(b, 67),
        })
    }
}

/// Encodes a state frame header for a snapshot of `len` bytes.
pub fn encode_state_header(version: Version, len: u64) -> [u8; STATE_HEADER_LEN] {
    let mut b = [0u8; STATE_HEADER_LEN];
    b[0..4].copy_from_slice(STATE_MAGIC);
    b[4] = VERSION;
    b[5..13].copy_from_slice(&version.epoch.to_be_bytes());
    b[13..21].copy_from_slice(&version.seq.to_be_bytes());
    b[21..29].copy_from_slice(&len.to_be_bytes());
    b
}

/// Decodes a state frame header: the snapshot's version and length (at most
/// [`MAX_SNAPSHOT_LEN`]).
pub fn decode_state_header(b: &[u8; STATE_HEADER_LEN]) -> Result<(Version, u64), WireError> {
    if &b[0..4] != STATE_MAGIC {
        return Err(WireError::Magic);
    }
    if b[4] != VERSION {
        return Err(WireError::Version(b[4]));
    }
    let version = Version {
        epoch: u64_at(b, 5),
        seq: u64_at(b, 13),
    };
    let len = u64_at(b, 21);
    if len > MAX_SNAPSHOT_LEN {
        return Err(WireError::TooLarge(len));
    }
    Ok((version, len))
}

/// A whole state frame: header, nonce and the sealed snapshot, for the process whose
/// heartbeat nonce is `receiver`.
pub fn seal_state(
    key: &PairKey,
    version: Version,
    receiver: u64,
    snapshot: &[u8],
) -> Result<Vec<u8>, WireError> {
    let len = snapshot.len() as u64;
    if len > MAX_SNAPSHOT_LEN {
        return Err(WireError::TooLarge(len));
    }
    let header = encode_state_header(version, len);
    let nonce: [u8; 24] = rand::random();
    let aad = state_aad(&header, receiver);
    let sealed = key
        .cipher()
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: snapshot,
                aad: &aad,
            },
        )
        .map_err(|_| WireError::TooLarge(len))?;
    let mut frame = Vec::with_capacity(STATE_HEADER_LEN + nonce.len() + sealed.len());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(&nonce);
    frame.extend_from_slice(&sealed);
    Ok(frame)
}

/// Opens what follows a state frame's header (`rest`: nonce and sealed snapshot, exactly
/// length + [`STATE_SEAL_OVERHEAD`] bytes) for this process (`receiver`: its own nonce).
pub fn open_state(
    key: &PairKey,
    header: &[u8; STATE_HEADER_LEN],
    receiver: u64,
    rest: &[u8],
) -> Result<Vec<u8>, WireError> {
    if rest.len() < STATE_SEAL_OVERHEAD as usize {
        return Err(WireError::Length(rest.len()));
    }
    let (nonce, sealed) = rest.split_at(24);
    let aad = state_aad(header, receiver);
    key.cipher()
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: &aad,
            },
        )
        .map_err(|_| WireError::Authentication)
}

fn state_aad(header: &[u8; STATE_HEADER_LEN], receiver: u64) -> [u8; STATE_HEADER_LEN + 8] {
    let mut aad = [0u8; STATE_HEADER_LEN + 8];
    aad[..STATE_HEADER_LEN].copy_from_slice(header);
    aad[STATE_HEADER_LEN..].copy_from_slice(&receiver.to_be_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(listen: &str) -> Heartbeat {
        Heartbeat {
            role: Role::Active,
            configured_active: true,
            hello: false,
            leaving: true,
            epoch: 7,
            nonce: 0xdead_beef_0102_0304,
            state: Version { epoch: 6, seq: 99 },
            listen: listen.parse().unwrap(),
            seq: 12345,
            echo: 0x0a0b_0c0d,
        }
    }

    fn key() -> PairKey {
        PairKey::new(b"correct horse battery staple")
    }

    #[test]
    fn heartbeat_roundtrip() {
        for addr in ["10.99.0.11:7400", "[fd00::1]:65535"] {
            let hb = sample(addr);
            assert_eq!(Heartbeat::decode(&hb.encode(&key()), &key()).unwrap(), hb);
            let hb = Heartbeat {
                role: Role::Passive,
                configured_active: false,
                hello: true,
                leaving: false,
                ..sample(addr)
            };
            assert_eq!(Heartbeat::decode(&hb.encode(&key()), &key()).unwrap(), hb);
        }
    }

    #[test]
    fn heartbeat_needs_the_same_key() {
        let hb = sample("127.0.0.1:7400");
        let other = PairKey::new(b"another key of some length");
        assert_eq!(
            Heartbeat::decode(&hb.encode(&key()), &other),
            Err(WireError::Authentication)
        );
        // No key at all is a key too: it does not open keyed heartbeats.
        assert_eq!(
            Heartbeat::decode(&hb.encode(&key()), &PairKey::new(b"")),
            Err(WireError::Authentication)
        );
        // Any altered byte of the body or the tag fails.
        let good = hb.encode(&key());
        for i in 5..HEARTBEAT_LEN {
            let mut b = good;
            b[i] ^= 0x01;
            assert!(Heartbeat::decode(&b, &key()).is_err(), "byte {i} flipped");
        }
    }

    #[test]
    fn heartbeat_rejects_garbage() {
        let k = key();
        let good = sample("127.0.0.1:1").encode(&k);
        assert_eq!(
            Heartbeat::decode(&good[..HEARTBEAT_LEN - 1], &k),
            Err(WireError::Length(HEARTBEAT_LEN - 1))
        );
        assert_eq!(Heartbeat::decode(&[], &k), Err(WireError::Length(0)));
        let mut long = good.to_vec();
        long.push(0);
        assert_eq!(
            Heartbeat::decode(&long, &k),
            Err(WireError::Length(HEARTBEAT_LEN + 1))
        );
        let mut b = good;
        b[0] = b'X';
        assert_eq!(Heartbeat::decode(&b, &k), Err(WireError::Magic));
        let mut b = good;
        b[4] = 1;
        assert_eq!(Heartbeat::decode(&b, &k), Err(WireError::Version(1)));
        // A bad family behind a good tag (only a key holder could send it) is still refused.
        let mut hb = sample("127.0.0.1:1").encode(&k);
        hb[40] = 5;
        let mut mac = k.heartbeat_mac();
        mac.update(&hb[..HEARTBEAT_BODY_LEN]);
        hb[HEARTBEAT_BODY_LEN..].copy_from_slice(&mac.finalize().into_bytes());
        assert_eq!(Heartbeat::decode(&hb, &k), Err(WireError::Family(5)));
        // Every single-byte corruption is refused (and nothing panics); setting a byte to the
        // value it already had leaves a heartbeat that still opens.
        let mut refused = 0;
        for i in 0..HEARTBEAT_LEN {
            for v in [0u8, 0x7f, 0xff] {
                let mut b = good;
                b[i] = v;
                let got = Heartbeat::decode(&b, &k);
                if b == good {
                    assert_eq!(got, Ok(sample("127.0.0.1:1")), "byte {i} unchanged");
                } else {
                    assert!(got.is_err(), "byte {i} set to {v:#04x} accepted: {got:?}");
                    refused += 1;
                }
            }
        }
        assert!(
            refused > 2 * HEARTBEAT_LEN,
            "only {refused} corrupted copies tried"
        );
    }

    #[test]
    fn state_header() {
        let v = Version { epoch: 3, seq: 12 };
        let h = encode_state_header(v, 70_000);
        assert_eq!(decode_state_header(&h).unwrap(), (v, 70_000));
        let h = encode_state_header(v, MAX_SNAPSHOT_LEN + 1);
        assert_eq!(
            decode_state_header(&h),
            Err(WireError::TooLarge(MAX_SNAPSHOT_LEN + 1))
        );
        let mut h = encode_state_header(v, 1);
        h[1] = 0;
        assert_eq!(decode_state_header(&h), Err(WireError::Magic));
    }

    fn split(frame: &[u8]) -> ([u8; STATE_HEADER_LEN], &[u8]) {
        let mut h = [0u8; STATE_HEADER_LEN];
        h.copy_from_slice(&frame[..STATE_HEADER_LEN]);
        (h, &frame[STATE_HEADER_LEN..])
    }

    #[test]
    fn state_frames_open_only_with_the_key_for_their_receiver() {
        let k = key();
        let v = Version { epoch: 3, seq: 12 };
        let secret = b"[admin]\ntoken = \"s3cret-s3cret-s3cret\"\n";
        let frame = seal_state(&k, v, 77, secret).unwrap();
        let (h, rest) = split(&frame);
        assert_eq!(decode_state_header(&h).unwrap(), (v, secret.len() as u64));
        assert_eq!(rest.len() as u64, secret.len() as u64 + STATE_SEAL_OVERHEAD);
        // The snapshot is not readable on the wire.
        assert!(!frame.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(open_state(&k, &h, 77, rest).unwrap(), secret.to_vec());
        // Another receiver (a restarted passive), another key, an altered header or body.
        assert_eq!(open_state(&k, &h, 78, rest), Err(WireError::Authentication));
        assert_eq!(
            open_state(&PairKey::new(b""), &h, 77, rest),
            Err(WireError::Authentication)
        );
        let mut h2 = h;
        h2[20] ^= 1;
        assert_eq!(
            open_state(&k, &h2, 77, rest),
            Err(WireError::Authentication)
        );
        let mut body = rest.to_vec();
        let last = body.len() - 1;
        body[last] ^= 1;
        assert_eq!(
            open_state(&k, &h, 77, &body),
            Err(WireError::Authentication)
        );
        assert_eq!(
            open_state(&k, &h, 77, &rest[..10]),
            Err(WireError::Length(10))
        );
        // Two seals of one snapshot differ (fresh nonce each time).
        assert_ne!(seal_state(&k, v, 77, secret).unwrap(), frame);
        // An empty snapshot still carries a tag.
        let empty = seal_state(&k, v, 77, b"").unwrap();
        let (h, rest) = split(&empty);
        assert_eq!(open_state(&k, &h, 77, rest).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn versions_order_by_epoch_then_seq() {
        assert!(Version { epoch: 2, seq: 1 } > Version { epoch: 1, seq: 500 });
        assert!(Version { epoch: 2, seq: 2 } > Version { epoch: 2, seq: 1 });
        assert!(Version::default() < Version { epoch: 1, seq: 1 });
    }
}
