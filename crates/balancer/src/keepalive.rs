//! TCP keepalive on both sides of every relayed connection (`tcp_keepalive`, default 600 s):
//! a client or server that vanished without a FIN or RST (a dead NAT entry, a powered-off
//! machine) is noticed and its connection closed, instead of holding a slot until the idle
//! timeout.
//!
//! The client side is set on the listener, and Linux gives every accepted connection the
//! listener's keepalive settings (no system call per connection); the server side is set on
//! each socket before it connects. Only the idle time is set: the interval between probes and
//! their number stay the system's (`net.ipv4.tcp_keepalive_intvl`, `tcp_keepalive_probes`).

use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};

/// Turns keepalive on with `idle` as the idle time, or off for None.
pub fn set<'s, S>(sock: &'s S, idle: Option<Duration>) -> std::io::Result<()>
where
    SockRef<'s>: From<&'s S>,
{
    let s = SockRef::from(sock);
    match idle {
        Some(idle) => s.set_tcp_keepalive(&TcpKeepalive::new().with_time(idle)),
        None => s.set_keepalive(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_inherit_the_listeners_keepalive() {
        let l = crate::balancer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        set(&l, Some(Duration::from_secs(600))).unwrap();
        let addr = l.local_addr().unwrap();
        let (c, a) = tokio::join!(tokio::net::TcpStream::connect(addr), l.accept());
        let _c = c.unwrap();
        let (accepted, _) = a.unwrap();
        let s = SockRef::from(&accepted);
        assert!(s.keepalive().unwrap());
        #[cfg(target_os = "linux")]
        assert_eq!(s.keepalive_time().unwrap(), Duration::from_secs(600));

        set(&accepted, None).unwrap();
        assert!(!SockRef::from(&accepted).keepalive().unwrap());
    }
}
