//! Wire formats, sans-IO: the heartbeat datagram and the header of a state frame.
//!
//! Heartbeat (UDP, 59 bytes, integers big-endian):
//! `"MFHB"`, version (1), flags, 2 reserved bytes, epoch (u64), nonce (u64),
//! state epoch (u64), state sequence (u64), address family (4 or 6), port (u16),
//! IP address (16 bytes, an IPv4 address in the first 4).
//!
//! State frame (TCP, from the active to the passive): `"MFHS"`, version (1), epoch (u64),
//! sequence (u64), length (u64), then `length` bytes of snapshot.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::Role;

const HEARTBEAT_MAGIC: &[u8; 4] = b"MFHB";
const STATE_MAGIC: &[u8; 4] = b"MFHS";
const VERSION: u8 = 1;

/// Length of an encoded heartbeat.
pub const HEARTBEAT_LEN: usize = 59;
/// Length of a state frame header.
pub const STATE_HEADER_LEN: usize = 29;
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
    /// Encodes the heartbeat.
    pub fn encode(&self) -> [u8; HEARTBEAT_LEN] {
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
        b
    }

    /// Decodes a datagram; never panics.
    pub fn decode(b: &[u8]) -> Result<Heartbeat, WireError> {
        if b.len() != HEARTBEAT_LEN {
            return Err(WireError::Length(b.len()));
        }
        if &b[0..4] != HEARTBEAT_MAGIC {
            return Err(WireError::Magic);
        }
        if b[4] != VERSION {
            return Err(WireError::Version(b[4]));
        }
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
        }
    }

    #[test]
    fn heartbeat_roundtrip() {
        for addr in ["10.99.0.11:7400", "[fd00::1]:65535"] {
            let hb = sample(addr);
            assert_eq!(Heartbeat::decode(&hb.encode()).unwrap(), hb);
            let hb = Heartbeat {
                role: Role::Passive,
                configured_active: false,
                hello: true,
                leaving: false,
                ..sample(addr)
            };
            assert_eq!(Heartbeat::decode(&hb.encode()).unwrap(), hb);
        }
    }

    #[test]
    fn heartbeat_rejects_garbage() {
        let good = sample("127.0.0.1:1").encode();
        assert_eq!(Heartbeat::decode(&good[..58]), Err(WireError::Length(58)));
        assert_eq!(Heartbeat::decode(&[]), Err(WireError::Length(0)));
        let mut long = good.to_vec();
        long.push(0);
        assert_eq!(Heartbeat::decode(&long), Err(WireError::Length(60)));
        let mut b = good;
        b[0] = b'X';
        assert_eq!(Heartbeat::decode(&b), Err(WireError::Magic));
        let mut b = good;
        b[4] = 2;
        assert_eq!(Heartbeat::decode(&b), Err(WireError::Version(2)));
        let mut b = good;
        b[40] = 5;
        assert_eq!(Heartbeat::decode(&b), Err(WireError::Family(5)));
        // Every single-byte corruption decodes or fails, never panics.
        for i in 0..HEARTBEAT_LEN {
            for v in [0u8, 0x7f, 0xff] {
                let mut b = good;
                b[i] = v;
                let _ = Heartbeat::decode(&b);
            }
        }
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

    #[test]
    fn versions_order_by_epoch_then_seq() {
        assert!(Version { epoch: 2, seq: 1 } > Version { epoch: 1, seq: 500 });
        assert!(Version { epoch: 2, seq: 2 } > Version { epoch: 2, seq: 1 });
        assert!(Version::default() < Version { epoch: 1, seq: 1 });
    }
}
