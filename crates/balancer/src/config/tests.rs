use super::*;

const GOOD: &str = r#"
[admin]
listen = "127.0.0.1:9900"

[[service]]
name = "imap"
listen = ["127.0.0.1:10143"]
mode = "tcp"
scheduler = "leastconn"
persistence = { kind = "source-ip", timeout = "15000s" }
timeouts = { connect = "5s", client = "1h", server = "1h" }
max_connections = 20000
proxy_protocol = "v2"
allow = ["127.0.0.0/8"]
deny = []
health = { check = "imap", interval = "2s", rise = 2, fall = 3, timeout = "1s", port = 10143 }
slow_start = "30s"

[[service.server]]
name = "n1"
address = "127.0.0.2:10143"
weight = 100
"#;

fn parse_err(text: &str) -> String {
    Config::parse(text, "b.toml").unwrap_err().to_string()
}

#[test]
fn the_issue_example_parses() {
    let c = Config::parse(GOOD, "b.toml").unwrap();
    let s = &c.services[0];
    assert_eq!(s.scheduler, SchedulerKind::Leastconn);
    assert_eq!(s.persistence, PersistenceKind::SourceIp);
    assert_eq!(s.persistence_timeout, Duration::from_secs(15000));
    assert_eq!(s.client_timeout, Duration::from_secs(3600));
    assert_eq!(s.slow_start, Duration::from_secs(30));
    assert_eq!(s.proxy_protocol, ProxyProtocol::V2);
    let h = s.health.as_ref().unwrap();
    assert_eq!((h.rise, h.fall, h.port), (2, 3, Some(10143)));
    assert_eq!(
        s.servers[0].addr(1),
        Some("127.0.0.2:10143".parse().unwrap())
    );
    assert!(s.access.permits("127.0.0.9".parse().unwrap()));
    assert!(!s.access.permits("10.0.0.1".parse().unwrap()));
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let text = GOOD.replace(
        "slow_start = \"30s\"",
        "slow_start = \"30s\"\nslowstart = 1",
    );
    let e = parse_err(&text);
    assert!(e.starts_with("b.toml:"), "{e}");
    assert!(e.contains("service[0]"), "{e}");
    assert!(e.contains("unknown field `slowstart`"), "{e}");
}

#[test]
fn admin_token_is_checked() {
    let with = |t: &str| {
        GOOD.replace(
            "listen = \"127.0.0.1:9900\"",
            &format!("listen = \"127.0.0.1:9900\"\ntoken = \"{t}\""),
        )
    };
    let c = Config::parse(&with("0123456789abcdef-x"), "b.toml").unwrap();
    assert_eq!(
        c.admin.unwrap().token.as_deref(),
        Some("0123456789abcdef-x")
    );
    for bad in ["short", "has a space in it, long enough"] {
        let e = parse_err(&with(bad));
        assert!(e.contains("admin.token"), "{bad}: {e}");
    }
}

#[test]
fn unknown_scheduler_names_the_key() {
    let e = parse_err(&GOOD.replace("\"leastconn\"", "\"fastest\""));
    assert!(e.contains("service[0].scheduler"), "{e}");
    assert!(e.contains("fastest"), "{e}");
}

#[test]
fn wrong_type_names_the_key() {
    let e = parse_err(&GOOD.replace("weight = 100", "weight = \"heavy\""));
    assert!(e.contains("service[0].server[0].weight"), "{e}");
}

#[test]
fn bad_duration_names_the_key() {
    let e = parse_err(&GOOD.replace("connect = \"5s\"", "connect = \"5 parsecs\""));
    assert!(e.contains("service[0].timeouts.connect"), "{e}");
    let e = parse_err(&GOOD.replace("interval = \"2s\"", "interval = \"0s\""));
    assert!(e.contains("service[0].health.interval"), "{e}");
}

#[test]
fn bad_access_entry_names_the_key() {
    let e = parse_err(&GOOD.replace("deny = []", "deny = [\"300.1.1.1\"]"));
    assert!(e.contains("service[0].deny[0]"), "{e}");
}

#[test]
fn bad_values_name_the_key() {
    for bad in [
        "n1 example",
        "-n1.example:143",
        "n1.example:0",
        "n1.example:http",
        "1.2.3",
    ] {
        let e = parse_err(&GOOD.replace(
            "address = \"127.0.0.2:10143\"",
            &format!("address = \"{bad}\""),
        ));
        assert!(e.contains("service[0].server[0].address"), "{bad}: {e}");
    }
    let e = parse_err(&GOOD.replace("weight = 100", "weight = 70000"));
    assert!(e.contains("service[0].server[0].weight"), "{e}");
    let e = parse_err(&GOOD.replace("rise = 2", "rise = 0"));
    assert!(e.contains("service[0].health.rise"), "{e}");
    let e = parse_err(&GOOD.replace("max_connections = 20000", "max_connections = 0"));
    assert!(e.contains("service[0].max_connections"), "{e}");
    let e = parse_err(&GOOD.replace("kind = \"source-ip\"", "kind = \"cookie\""));
    assert!(e.contains("service[0].persistence.kind"), "{e}");
    let e = parse_err(&GOOD.replace("127.0.0.1:10143\"]", "127.0.0.1:9900\"]"));
    assert!(e.contains("service[0].listen[0]"), "{e}");
}

#[test]
fn duplicate_server_names_are_refused() {
    let text = format!("{GOOD}\n[[service.server]]\nname = \"n1\"\naddress = \"127.0.0.3:1\"\n");
    let e = parse_err(&text);
    assert!(e.contains("service[0].server[1].name"), "{e}");
}

#[test]
fn bare_ip_server_uses_the_listen_port() {
    let text = GOOD.replace("address = \"127.0.0.2:10143\"", "address = \"127.0.0.2\"");
    let c = Config::parse(&text, "b.toml").unwrap();
    assert_eq!(
        c.services[0].servers[0].addr(993),
        Some("127.0.0.2:993".parse().unwrap())
    );
}

#[test]
fn pair_section_is_checked() {
    let pair = "[pair]\nrole = \"active\"\nlisten = \"127.0.0.1:7000\"\npeer = \"127.0.0.1:7001\"\ninterval = \"500ms\"\n";
    let c = Config::parse(&format!("{GOOD}\n{pair}"), "b.toml").unwrap();
    assert_eq!(c.pair.unwrap().role, mailfleet_ha::Role::Active);
    let e = parse_err(&format!(
        "{GOOD}\n{}",
        pair.replace("500ms", "5 fortnights")
    ));
    assert!(e.contains("pair.interval"), "{e}");
    let e = parse_err(&format!(
        "{GOOD}\n{}",
        pair.replace("\"active\"", "\"leader\"")
    ));
    assert!(e.contains("pair.role"), "{e}");
    let e = parse_err(&format!("{GOOD}\n{pair}vips = 1\n"));
    assert!(e.contains("unknown field `vips`"), "{e}");
}

#[test]
fn the_example_file_is_valid() {
    let text = include_str!("../../examples/balancer.toml");
    let c = Config::parse(text, "examples/balancer.toml").unwrap();
    assert_eq!(c.services.len(), 4);
    assert_eq!(c.services[2].servers[0].port, None);
    assert_eq!(c.services[3].mode, Mode::Http);
}

#[test]
fn defaults_fill_in() {
    let text = "[[service]]\nname = \"s\"\nlisten = [\"127.0.0.1:0\"]\n[[service.server]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n";
    let c = Config::parse(text, "b.toml").unwrap();
    // A soft stop waits up to 30 s for open connections.
    assert_eq!(c.stop_timeout, Duration::from_secs(30));
    let s = &c.services[0];
    assert_eq!(s.scheduler, SchedulerKind::Roundrobin);
    assert_eq!(s.mode, Mode::Tcp);
    assert_eq!(s.servers[0].weight, DEFAULT_WEIGHT);
    // No health key: HAProxy's `check`, a TCP connect every 2 s, rise 2, fall 3.
    let h = s.health.as_ref().unwrap();
    assert_eq!(h, &HealthConfig::default_tcp());
    assert_eq!(
        (h.check, h.interval, h.rise, h.fall),
        (CheckKind::Tcp, Duration::from_secs(2), 2, 3)
    );
    assert_eq!(s.tcp_keepalive, Some(Duration::from_secs(600)));
    assert_eq!(s.resolve_interval, Duration::from_secs(60));
    assert_eq!(s.max_connections, DEFAULT_MAX_CONNECTIONS);
    assert!(!s.max_connections_set);
    assert!(s.access.permits("192.0.2.1".parse().unwrap()));
}

#[test]
fn http_mode_has_short_default_timeouts() {
    let svc = |extra: &str| {
        let text = format!(
            "[[service]]\nname = \"s\"\nlisten = [\"127.0.0.1:0\"]\n{extra}\n\
             [[service.server]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n"
        );
        Config::parse(&text, "b.toml").map(|c| c.services[0].clone())
    };
    // http mode with no timeouts: 30 s for a request's header, 60 s idle.
    let s = svc("mode = \"http\"").unwrap();
    assert_eq!(s.header_timeout, Duration::from_secs(30));
    assert_eq!(s.client_timeout, Duration::from_secs(60));
    assert_eq!(DEFAULT_HTTP_HEADER_TIMEOUT, Duration::from_secs(30));
    // The example file shows the defaults.
    let example = Config::parse(include_str!("../../examples/balancer.toml"), "e").unwrap();
    let web = &example.services[3];
    assert_eq!(
        (web.header_timeout, web.client_timeout),
        (s.header_timeout, s.client_timeout)
    );
    // tcp mode keeps its hour of idleness (IMAP IDLE).
    let s = svc("").unwrap();
    assert_eq!(s.client_timeout, Duration::from_secs(3600));
    assert_eq!(s.server_timeout, Duration::from_secs(3600));
    // Configurable.
    let s = svc("mode = \"http\"\ntimeouts = { header = \"2s\", client = \"5m\" }").unwrap();
    assert_eq!(s.header_timeout, Duration::from_secs(2));
    assert_eq!(s.client_timeout, Duration::from_secs(300));
    // header is http's alone, and never zero.
    let e = svc("timeouts = { header = \"2s\" }")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("service[0].timeouts.header") && e.contains("mode = \"http\""),
        "{e}"
    );
    let e = svc("mode = \"http\"\ntimeouts = { header = \"0s\" }")
        .unwrap_err()
        .to_string();
    assert!(e.contains("must be more than zero"), "{e}");
}

#[test]
fn the_file_must_be_a_small_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = Config::load(Path::new("/dev/zero"))
        .unwrap_err()
        .to_string();
    assert_eq!(e, "/dev/zero: not a regular file but a character device");
    let big = dir.path().join("big.toml");
    let mut text = String::from("# padding\n");
    while text.len() <= 2 << 20 {
        text.push_str("# padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&big, &text).unwrap();
    let e = Config::load(&big).unwrap_err().to_string();
    assert!(e.contains("too large") && e.contains("1 MiB"), "{e}");
    // A symbolic link loop: the cause is in the message and is not also its source.
    let a = dir.path().join("a.toml");
    std::os::unix::fs::symlink(dir.path().join("b.toml"), &a).unwrap();
    std::os::unix::fs::symlink(&a, dir.path().join("b.toml")).unwrap();
    let e = Config::load(&a).unwrap_err();
    assert!(std::error::Error::source(&e).is_none(), "{e:?}");
    assert_eq!(
        e.to_string()
            .matches("Too many levels of symbolic links")
            .count(),
        1,
        "{e}"
    );
}

fn one_service(extra: &str, address: &str) -> Result<Config, String> {
    let text = format!(
        "[[service]]\nname = \"s\"\nlisten = [\"127.0.0.1:0\"]\n{extra}\n\
         [[service.server]]\nname = \"a\"\naddress = \"{address}\"\n"
    );
    Config::parse(&text, "b.toml").map_err(|e| e.to_string())
}

#[test]
fn health_none_turns_checks_off() {
    let c = one_service("health = \"none\"", "127.0.0.1:1").unwrap();
    assert!(c.services[0].health.is_none());
    let e = one_service("health = \"off\"", "127.0.0.1:1").unwrap_err();
    assert!(
        e.contains("service[0].health") && e.contains("\"none\""),
        "{e}"
    );
    // A table still has its keys checked.
    let e = one_service(
        "health = { check = \"tcp\", intervall = \"2s\" }",
        "127.0.0.1:1",
    )
    .unwrap_err();
    assert!(
        e.contains("service[0].health") && e.contains("intervall"),
        "{e}"
    );
    let c = one_service("health = { check = \"smtp\" }", "127.0.0.1:1").unwrap();
    assert_eq!(
        c.services[0].health.as_ref().unwrap().check,
        CheckKind::Smtp
    );
}

#[test]
fn tcp_keepalive_and_resolve_interval_are_checked() {
    let ka = |v: &str| one_service(&format!("tcp_keepalive = \"{v}\""), "127.0.0.1:1");
    assert_eq!(
        ka("5m").unwrap().services[0].tcp_keepalive,
        Some(Duration::from_secs(300))
    );
    assert_eq!(ka("off").unwrap().services[0].tcp_keepalive, None);
    assert_eq!(ka("0s").unwrap().services[0].tcp_keepalive, None);
    for bad in ["10ms", "1000h", "often"] {
        let e = ka(bad).unwrap_err();
        assert!(e.contains("service[0].tcp_keepalive"), "{bad}: {e}");
    }
    let e = one_service("resolve_interval = \"100ms\"", "127.0.0.1:1").unwrap_err();
    assert!(e.contains("service[0].resolve_interval"), "{e}");
    let c = one_service("resolve_interval = \"5m\"", "127.0.0.1:1").unwrap();
    assert_eq!(c.services[0].resolve_interval, Duration::from_secs(300));
}

#[test]
fn server_addresses_may_be_host_names() {
    let c = one_service("", "Mail-1.Example.NET:143").unwrap();
    let s = &c.services[0].servers[0];
    assert_eq!(s.host, ServerHost::Name("mail-1.example.net".into()));
    assert_eq!((s.port, s.addr(1)), (Some(143), None));
    let c = one_service("", "localhost").unwrap();
    assert_eq!(
        c.services[0].servers[0].host,
        ServerHost::Name("localhost".into())
    );
    assert_eq!(c.services[0].servers[0].port, None);
    let c = one_service("", "[::1]:143").unwrap();
    assert_eq!(
        c.services[0].servers[0].addr(1),
        Some("[::1]:143".parse().unwrap())
    );
}

#[test]
fn an_api_off_loopback_needs_a_token_or_an_allow_list() {
    let admin = |body: &str| {
        format!(
            "[admin]\n{body}\n[[service]]\nname = \"s\"\nlisten = [\"127.0.0.1:0\"]\n\
             [[service.server]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n"
        )
    };
    for listen in ["0.0.0.0:9900", "192.0.2.1:9900", "[::]:9900"] {
        let e = parse_err(&admin(&format!("listen = \"{listen}\"")));
        assert!(
            e.contains("key `admin.listen`")
                && e.contains("admin.token")
                && e.contains("admin.allow"),
            "{listen}: {e}"
        );
    }
    for ok in [
        "listen = \"127.0.0.1:9900\"",
        "listen = \"[::1]:9900\"",
        "listen = \"0.0.0.0:9900\"\nallow = [\"10.0.0.0/8\"]",
        "listen = \"0.0.0.0:9900\"\ntoken = \"0123456789abcdef-x\"",
    ] {
        Config::parse(&admin(ok), "b.toml").unwrap();
    }
    // A deny list alone does not do: everyone else may still come in.
    let e = parse_err(&admin("listen = \"0.0.0.0:9900\"\ndeny = [\"10.0.0.0/8\"]"));
    assert!(e.contains("admin.listen"), "{e}");
}

#[test]
fn cluster_services_take_their_servers_from_the_cluster() {
    let base = "[[service]]\nname = \"imap\"\nlisten = [\"127.0.0.1:10143\"]\n";
    let cluster = "[cluster]\nstore = \"sqlite:/tmp/x.db\"\nname = \"lb1\"\n";
    let c = Config::parse(
        &format!("{cluster}{base}servers = \"cluster\"\ncluster_service = \"imap\"\n"),
        "b.toml",
    )
    .unwrap();
    assert_eq!(
        c.cluster,
        Some(ClusterConfig {
            store: "sqlite:/tmp/x.db".into(),
            name: "lb1".into()
        })
    );
    assert_eq!(c.services[0].cluster_service.as_deref(), Some("imap"));
    assert!(c.services[0].servers.is_empty());
    for (text, key) in [
        (
            format!("{base}servers = \"cluster\"\ncluster_service = \"imap\"\n"),
            "service[0].servers",
        ),
        (
            format!("{cluster}{base}servers = \"cluster\"\n"),
            "service[0].cluster_service",
        ),
        (
            format!("{cluster}{base}servers = \"dns\"\ncluster_service = \"imap\"\n"),
            "service[0].servers",
        ),
        (
            format!(
                "{cluster}{base}cluster_service = \"imap\"\n[[service.server]]\nname = \"a\"\naddress = \"127.0.0.2:143\"\n"
            ),
            "service[0].cluster_service",
        ),
        (
            format!(
                "{cluster}{base}servers = \"cluster\"\ncluster_service = \"imap\"\n[[service.server]]\nname = \"a\"\naddress = \"127.0.0.2:143\"\n"
            ),
            "service[0].server",
        ),
        (
            format!(
                "[cluster]\nstore = \"\"\n{base}servers = \"cluster\"\ncluster_service = \"imap\"\n"
            ),
            "cluster.store",
        ),
        (
            format!(
                "[cluster]\nstore = \"sqlite:/x\"\nname = \"a b\"\n{base}servers = \"cluster\"\ncluster_service = \"imap\"\n"
            ),
            "cluster.name",
        ),
        (
            format!(
                "[cluster]\nstore = \"sqlite:/x\"\nport = 1\n{base}servers = \"cluster\"\ncluster_service = \"imap\"\n"
            ),
            "cluster",
        ),
    ] {
        let e = parse_err(&text);
        assert!(
            e.contains(&format!("key `{key}")) || e.contains(key),
            "{key}: {e}"
        );
    }
}

#[test]
fn quick_ack_is_off_by_default_and_tcp_only() {
    let c = one_service("", "127.0.0.1:1").unwrap();
    assert!(!c.services[0].quick_ack);
    let c = one_service("quick_ack = true", "127.0.0.1:1").unwrap();
    assert!(c.services[0].quick_ack);
    let e = one_service("mode = \"http\"\nquick_ack = true", "127.0.0.1:1").unwrap_err();
    assert!(
        e.contains("service[0].quick_ack") && e.contains("mode = \"tcp\""),
        "{e}"
    );
}
