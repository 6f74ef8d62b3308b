//! The virtual IPs: added and removed with rtnetlink; IPv4 ones announced with gratuitous ARP,
//! IPv6 ones with unsolicited neighbour advertisements (RFC 4861 section 7.2.6: ICMPv6 type 136
//! to all nodes, ff02::1, with the override flag, so neighbours replace the link-layer address
//! they had for it). IPv6 addresses are added without duplicate address detection: the address
//! is meant to move, and a tentative one could neither be used nor announced for a second.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::{AddressMessageBuilder, Handle};

use crate::HaError;
use crate::config::Vip;

/// Length of a gratuitous ARP frame (Ethernet minimum, padded).
pub const GARP_FRAME_LEN: usize = 60;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
/// Length of an unsolicited neighbour advertisement frame: Ethernet (14), IPv6 (40), the
/// advertisement (24) and its target link-layer address option (8).
pub const NA_FRAME_LEN: usize = 86;
/// ICMPv6 neighbour advertisement.
const ICMPV6_NA: u8 = 136;
/// The advertisement's override flag.
const NA_OVERRIDE: u8 = 0x20;
const ARPOP_REQUEST: u16 = 1;
const ARPOP_REPLY: u16 = 2;

/// Builds a gratuitous ARP frame for `ip` owned by `mac`: a broadcast request (`op` 1) or
/// reply (`op` 2) whose sender and target protocol addresses are both `ip`.
pub fn garp_frame(op: u16, mac: [u8; 6], ip: Ipv4Addr) -> [u8; GARP_FRAME_LEN] {
    let mut f = [0u8; GARP_FRAME_LEN];
    // Ethernet: broadcast destination, our source, ARP.
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    // ARP over Ethernet/IPv4.
    f[14..16].copy_from_slice(&1u16.to_be_bytes());
    f[16..18].copy_from_slice(&ETH_P_IP.to_be_bytes());
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&op.to_be_bytes());
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    let target_mac = if op == ARPOP_REPLY { [0xff; 6] } else { [0; 6] };
    f[32..38].copy_from_slice(&target_mac);
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// Builds an unsolicited neighbour advertisement for `ip` owned by `mac`: from `ip` to all nodes
/// (ff02::1, Ethernet 33:33:00:00:00:01), hop limit 255, override flag set, solicited and router
/// flags clear, with the target link-layer address option.
pub fn na_frame(mac: [u8; 6], ip: Ipv6Addr) -> [u8; NA_FRAME_LEN] {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut f = [0u8; NA_FRAME_LEN];
    f[0..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    // IPv6 header.
    let ip6 = &mut f[14..54];
    ip6[0] = 0x60;
    ip6[4..6].copy_from_slice(&32u16.to_be_bytes());
    ip6[6] = 58; // ICMPv6
    ip6[7] = 255; // neighbour discovery demands it
    ip6[8..24].copy_from_slice(&ip.octets());
    ip6[24..40].copy_from_slice(&all_nodes.octets());
    // The advertisement and its option.
    let icmp = &mut f[54..86];
    icmp[0] = ICMPV6_NA;
    icmp[4] = NA_OVERRIDE;
    icmp[8..24].copy_from_slice(&ip.octets());
    icmp[24] = 2; // target link-layer address
    icmp[25] = 1; // in units of 8 bytes
    icmp[26..32].copy_from_slice(&mac);
    let sum = icmpv6_checksum(ip, all_nodes, &f[54..86]);
    f[56..58].copy_from_slice(&sum.to_be_bytes());
    f
}

/// The ICMPv6 checksum of `msg` (its checksum field zero) between `src` and `dst`.
fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).copied().map(u32::from).unwrap_or(0);
            sum += hi | lo;
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(msg.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(msg);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends `frames` on interface `ifindex` to Ethernet address `dest` through a raw `AF_PACKET`
/// socket of protocol `ethertype` (needs CAP_NET_RAW).
fn send_frames(ifindex: u32, ethertype: u16, dest: [u8; 6], frames: &[&[u8]]) -> io::Result<()> {
    let proto = ethertype.to_be();
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a freshly created, valid descriptor we exclusively own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = i32::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index out of range"))?;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&dest);
    for frame in frames {
        // SAFETY: frame and sll are valid for the lengths passed.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const sll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sends one gratuitous ARP request and one reply for `ip` on interface `ifindex`.
pub fn send_garp(ifindex: u32, mac: [u8; 6], ip: Ipv4Addr) -> io::Result<()> {
    let request = garp_frame(ARPOP_REQUEST, mac, ip);
    let reply = garp_frame(ARPOP_REPLY, mac, ip);
    send_frames(ifindex, ETH_P_ARP, [0xff; 6], &[&request, &reply])
}

/// Sends one unsolicited neighbour advertisement for `ip` on interface `ifindex`.
pub fn send_unsolicited_na(ifindex: u32, mac: [u8; 6], ip: Ipv6Addr) -> io::Result<()> {
    let frame = na_frame(mac, ip);
    send_frames(ifindex, ETH_P_IPV6, [0x33, 0x33, 0, 0, 0, 1], &[&frame])
}

/// Announces `ip` as ours on interface `ifindex`: gratuitous ARP for IPv4, an unsolicited
/// neighbour advertisement for IPv6.
pub fn announce(ifindex: u32, mac: [u8; 6], ip: IpAddr) -> io::Result<()> {
    match ip {
        IpAddr::V4(ip) => send_garp(ifindex, mac, ip),
        IpAddr::V6(ip) => send_unsolicited_na(ifindex, mac, ip),
    }
}

/// Adds and removes one virtual address on one interface.
pub struct VipControl {
    vip: Vip,
    ifname: String,
    handle: Handle,
}

fn netlink_code(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

impl VipControl {
    /// Opens a netlink connection (its driver runs on the current tokio runtime) and checks
    /// that the interface exists.
    pub async fn new(vip: Vip, ifname: String) -> Result<VipControl, HaError> {
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| HaError::Netlink(format!("cannot open a netlink socket: {e}")))?;
        tokio::spawn(conn);
        let control = VipControl {
            vip,
            ifname,
            handle,
        };
        control.link().await?;
        Ok(control)
    }

    /// The virtual address.
    pub fn vip(&self) -> Vip {
        self.vip
    }

    /// The interface's index and hardware address.
    pub async fn link(&self) -> Result<(u32, [u8; 6]), HaError> {
        let missing = |message: String| HaError::Interface {
            name: self.ifname.clone(),
            message,
        };
        let msg = self
            .handle
            .link()
            .get()
            .match_name(self.ifname.clone())
            .execute()
            .try_next()
            .await
            .map_err(|e| match netlink_code(&e) {
                Some(libc::ENODEV) => missing("no such interface".into()),
                _ => missing(e.to_string()),
            })?
            .ok_or_else(|| missing("no such interface".into()))?;
        let mut mac = [0u8; 6];
        for attr in &msg.attributes {
            if let LinkAttribute::Address(a) = attr
                && a.len() == 6
            {
                mac.copy_from_slice(a);
            }
        }
        Ok((msg.header.index, mac))
    }

    /// Adds the address (already present is fine) and returns the interface's index and
    /// hardware address for the announcement.
    pub async fn add(&self) -> Result<(u32, [u8; 6]), HaError> {
        let (index, mac) = self.link().await?;
        let mut request = self
            .handle
            .address()
            .add(index, self.vip.addr, self.vip.prefix);
        if self.vip.addr.is_ipv6() {
            let message = request.message_mut();
            message.header.flags = AddressHeaderFlags::Nodad;
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match request.execute().await {
            Ok(()) => Ok((index, mac)),
            Err(e) if netlink_code(&e) == Some(libc::EEXIST) => Ok((index, mac)),
            Err(e) => Err(HaError::Netlink(format!(
                "cannot add {} to {}: {e}",
                self.vip, self.ifname
            ))),
        }
    }

    /// Removes the address; absent (or the interface gone) is fine.
    pub async fn remove(&self) -> Result<(), HaError> {
        let index = match self.link().await {
            Ok((index, _)) => index,
            Err(HaError::Interface { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let msg = match self.vip.addr {
            IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
                .index(index)
                .address(a, self.vip.prefix)
                .build(),
            IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
                .index(index)
                .address(a, self.vip.prefix)
                .build(),
        };
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if matches!(netlink_code(&e), Some(libc::EADDRNOTAVAIL | libc::ENODEV)) => {
                Ok(())
            }
            Err(e) => Err(HaError::Netlink(format!(
                "cannot remove {} from {}: {e}",
                self.vip, self.ifname
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garp_request_layout() {
        let mac = [0x02, 0, 0, 0, 0, 0x0b];
        let ip = Ipv4Addr::new(10, 99, 0, 100);
        let f = garp_frame(ARPOP_REQUEST, mac, ip);
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[14..22], &[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
        assert_eq!(&f[22..28], &mac);
        assert_eq!(&f[28..32], &[10, 99, 0, 100]);
        assert_eq!(&f[32..38], &[0; 6]);
        assert_eq!(&f[38..42], &[10, 99, 0, 100]);
        assert!(f[42..].iter().all(|&b| b == 0));
    }

    #[test]
    fn unsolicited_na_layout_and_checksum() {
        let mac = [0x02, 0, 0, 0, 0, 0x0d];
        let ip: Ipv6Addr = "fd00:99::100".parse().unwrap();
        let f = na_frame(mac, ip);
        assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        assert_eq!(f[14] >> 4, 6);
        assert_eq!(&f[18..20], &[0, 32], "payload length");
        assert_eq!(f[20], 58, "next header ICMPv6");
        assert_eq!(f[21], 255, "hop limit");
        assert_eq!(&f[22..38], &ip.octets(), "source");
        assert_eq!(&f[38..54], &"ff02::1".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(f[54], 136, "type");
        assert_eq!(f[55], 0, "code");
        assert_eq!(f[58], 0x20, "override only: not solicited, not a router");
        assert_eq!(&f[62..78], &ip.octets(), "target");
        assert_eq!(&f[78..80], &[2, 1]);
        assert_eq!(&f[80..86], &mac);
        // Summing the pseudo-header and the message with its checksum gives 0xffff.
        let src: Ipv6Addr = ip;
        let dst: Ipv6Addr = "ff02::1".parse().unwrap();
        assert_eq!(icmpv6_checksum(src, dst, &f[54..86]), 0);
        // A known value: RFC 1071 arithmetic done by hand for a one-word message.
        assert_eq!(
            icmpv6_checksum(Ipv6Addr::UNSPECIFIED, Ipv6Addr::UNSPECIFIED, &[0x12, 0x34]),
            !(0x1234u16 + 2 + 58)
        );
    }

    #[test]
    fn garp_reply_layout() {
        let mac = [0x02, 0, 0, 0, 0, 0x0c];
        let f = garp_frame(ARPOP_REPLY, mac, Ipv4Addr::new(192, 0, 2, 7));
        assert_eq!(&f[20..22], &[0, 2]);
        assert_eq!(&f[32..38], &[0xff; 6]);
        assert_eq!(&f[28..32], &f[38..42]);
    }
}
