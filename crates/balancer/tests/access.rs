//! Allow/deny by CIDR and range: a refused client is closed at once (after the service's
//! reject line, if any) and counted.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn cidr_allow_and_range_deny() {
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let text = format!(
        "[[service]]\nname = \"smtp\"\nlisten = [\"127.0.0.1:0\"]\nreject = \"smtp\"\n\
         allow = [\"127.0.0.0/29\"]\ndeny = [\"127.0.0.5-127.0.0.6\"]\n\
         health = \"none\"\n{}",
        servers(&[&a], &[])
    );
    let r = Running::start(&text).await;
    let addr = r.addr("smtp");
    for ok in ["127.0.0.1", "127.0.0.4", "127.0.0.7"] {
        assert_eq!(
            Client::open_from(ok, addr).await.unwrap().server,
            "a",
            "{ok}"
        );
    }
    for refused in ["127.0.0.5", "127.0.0.6", "127.0.0.8", "127.0.0.200"] {
        let mut s = connect_from(refused, addr).await.unwrap();
        let got = read_to_close(&mut s, Duration::from_secs(2))
            .await
            .expect("closed at once");
        // Denied clients get nothing, not even the reject line: they learn nothing.
        assert!(got.is_empty(), "{refused}: {got:?}");
    }
    let st = r.balancer.stats();
    assert_eq!(st.service("smtp").unwrap().denied, 4);
    assert_eq!(a.count(), 3);
}
