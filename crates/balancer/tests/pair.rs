//! A balancer pair on loopback (no virtual IP): the passive member takes the active's services
//! and persistence table, keeps its own `[pair]` section, writes what it got to its file, and
//! sends persistent clients to the same servers as the active. (The failover itself, with a
//! virtual IP in network namespaces, is tested in mailfleet-ha.) On tokio's paused clock: a
//! busy machine cannot starve the 50 ms heartbeats into a takeover.

mod common;

use std::time::Duration;

use common::*;
use mailfleet_ha::Role;
use mailfleet_test_support::free_port;

fn pair(role: &str, me: u16, peer: u16) -> String {
    format!(
        "[pair]\nrole = \"{role}\"\nlisten = \"127.0.0.1:{me}\"\npeer = \"127.0.0.1:{peer}\"\ninterval = \"50ms\"\nkey = \"balancer pair test key\"\n\n"
    )
}

#[tokio::test(start_paused = true)]
async fn the_passive_follows_the_active() {
    fine_clock();
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let b = Backend::start("127.0.0.1", "b", Kind::Echo).await;
    let (pa, pp) = (free_port(), free_port());
    let service = |servers_: &str| {
        format!(
            "[[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:0\"]\nscheduler = \"roundrobin\"\n\
             persistence = {{ kind = \"source-ip\", timeout = \"1h\" }}\n{servers_}"
        )
    };
    let active_text = format!(
        "{}{}",
        pair("active", pa, pp),
        service(&servers(&[&a, &b], &[]))
    );
    let passive_text = format!(
        "{}{}",
        pair("passive", pp, pa),
        service(&servers(&[&a], &[]))
    );
    let (active, passive) =
        tokio::join!(Running::start(&active_text), Running::start(&passive_text));
    assert_eq!(active.balancer.pair_role(), Some(Role::Active));
    assert_eq!(passive.balancer.pair_role(), Some(Role::Passive));
    assert_eq!(active.balancer.stats().pair_role.as_deref(), Some("active"));

    let five = Client::open_from("127.0.0.5", active.addr("imap"))
        .await
        .unwrap()
        .server;
    let six = Client::open_from("127.0.0.6", active.addr("imap"))
        .await
        .unwrap()
        .server;
    assert_ne!(five, six);

    // The passive gets the services (server b appears) and both persistence entries.
    eventually(Duration::from_secs(3), || {
        let st = passive.balancer.stats();
        let svc = st.service("imap").unwrap();
        svc.server("b").is_some() && svc.persistence_entries == 2
    })
    .await
    .expect("state replicated to the passive");

    // Its file now holds the active's services with its own [pair] section.
    let file: toml::Table = std::fs::read_to_string(&passive.path)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(file["pair"]["role"].as_str(), Some("passive"));
    assert_eq!(file["service"][0]["server"].as_array().unwrap().len(), 2);

    // Persistent clients land on the same servers through the passive (the round robin alone
    // would send the first client to a).
    let via_passive = passive.addr("imap");
    assert_eq!(
        Client::open_from("127.0.0.6", via_passive)
            .await
            .unwrap()
            .server,
        six
    );
    assert_eq!(
        Client::open_from("127.0.0.5", via_passive)
            .await
            .unwrap()
            .server,
        five
    );

    // A reload on the active reaches the passive.
    active.write(&active_text.replace("\"roundrobin\"", "\"leastconn\""));
    active.balancer.reload().unwrap();
    eventually(Duration::from_secs(3), || {
        passive.balancer.stats().service("imap").unwrap().scheduler
            == mailfleet_balancer::config::SchedulerKind::Leastconn
    })
    .await
    .expect("reload replicated");
    assert_eq!(passive.balancer.pair_role(), Some(Role::Passive));
}

#[tokio::test(start_paused = true)]
async fn a_server_halted_on_the_active_stays_halted_after_a_failover() {
    fine_clock();
    let a = Backend::start("127.0.0.1", "a", Kind::Echo).await;
    let b = Backend::start("127.0.0.1", "b", Kind::Echo).await;
    let (pa, pp) = (free_port(), free_port());
    let service = format!(
        "[[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:0\"]\nscheduler = \"roundrobin\"\n{}",
        servers(&[&a, &b], &[])
    );
    let active_text = format!("{}{service}", pair("active", pa, pp));
    let passive_text = format!("{}{service}", pair("passive", pp, pa));
    let (active, passive) =
        tokio::join!(Running::start(&active_text), Running::start(&passive_text));
    assert_eq!(passive.balancer.pair_role(), Some(Role::Passive));

    // Halted and reweighted on the active: the passive follows and keeps it in its state file.
    active
        .balancer
        .set_admin("imap", "a", mailfleet_balancer::AdminState::Maint)
        .unwrap();
    active.balancer.set_weight("imap", "b", 7).unwrap();
    let weight_b = |bal: &mailfleet_balancer::Balancer| {
        bal.stats()
            .service("imap")
            .unwrap()
            .server("b")
            .unwrap()
            .weight
    };
    eventually(Duration::from_secs(3), || {
        state(&passive.balancer, "imap", "a") == "maint" && weight_b(&passive.balancer) == 7
    })
    .await
    .expect("maint and weight replicated to the passive");
    let saved = std::fs::read_to_string(passive.balancer.state_file().unwrap()).unwrap();
    assert!(saved.contains("\"maint\""), "{saved}");

    // The active goes away; the passive takes over with a still halted.
    let via_passive = passive.addr("imap");
    drop(active);
    eventually(Duration::from_secs(3), || {
        passive.balancer.pair_role() == Some(Role::Active)
    })
    .await
    .expect("the passive took over");
    assert_eq!(state(&passive.balancer, "imap", "a"), "maint");
    assert_eq!(weight_b(&passive.balancer), 7);
    for _ in 0..4 {
        assert_eq!(Client::open(via_passive).await.unwrap().server, "b");
    }
}
