//! TCP check: the connection opens (and the PROXY preamble, if any, could be written).

use tokio::net::TcpStream;

pub async fn check(_s: &mut TcpStream) -> Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::probe;
    use super::super::script::{Step, cfg, serve};
    use crate::config::CheckKind;

    #[tokio::test]
    async fn open_port_passes_closed_port_fails() {
        let addr = serve(vec![Step::Hang]).await;
        assert_eq!(probe(&cfg(CheckKind::Tcp), addr, b"").await, Ok(()));
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let e = probe(&cfg(CheckKind::Tcp), closed, b"").await.unwrap_err();
        assert!(e.contains("connect"), "{e}");
    }
}
