//! The virtual IP: added and removed with rtnetlink, announced with gratuitous ARP.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::{AddressMessageBuilder, Handle};

use crate::HaError;
use crate::config::Vip;

/// Length of a gratuitous ARP frame (Ethernet minimum, padded).
pub const GARP_FRAME_LEN: usize = 60;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;
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

/// Sends one gratuitous ARP request and one reply for `ip` on interface `ifindex`
/// through a raw `AF_PACKET` socket (needs CAP_NET_RAW).
pub fn send_garp(ifindex: u32, mac: [u8; 6], ip: Ipv4Addr) -> io::Result<()> {
    let proto = ETH_P_ARP.to_be();
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
    sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    for op in [ARPOP_REQUEST, ARPOP_REPLY] {
        let frame = garp_frame(op, mac, ip);
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
        match self
            .handle
            .address()
            .add(index, IpAddr::V4(self.vip.addr), self.vip.prefix)
            .execute()
            .await
        {
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
        let msg = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(self.vip.addr, self.vip.prefix)
            .build();
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
    fn garp_reply_layout() {
        let mac = [0x02, 0, 0, 0, 0, 0x0c];
        let f = garp_frame(ARPOP_REPLY, mac, Ipv4Addr::new(192, 0, 2, 7));
        assert_eq!(&f[20..22], &[0, 2]);
        assert_eq!(&f[32..38], &[0xff; 6]);
        assert_eq!(&f[28..32], &f[38..42]);
    }
}
