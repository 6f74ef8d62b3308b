//! One test per command: good inputs give exact values, bad ones a BAD with the tag; the
//! examples of RFC 9051 §6 parse.

use mailfleet_imap_proto::*;

fn opts() -> Options {
    Options::default()
}

fn utf8() -> Options {
    Options {
        utf8: true,
        ..Options::default()
    }
}

#[track_caller]
fn parse_with(s: &[u8], o: &Options) -> TaggedCommand {
    match decode_command(s, o) {
        Ok(Decoded::Command(c, n)) => {
            assert_eq!(
                n,
                s.len(),
                "consumed all of {:?}",
                String::from_utf8_lossy(s)
            );
            c
        }
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(s)),
    }
}

#[track_caller]
fn cmd(s: &str) -> Command {
    parse_with(s.as_bytes(), &opts()).command
}

#[track_caller]
fn err(s: &str) -> DecodeError {
    match decode_command(s.as_bytes(), &opts()) {
        Err(e) => e,
        other => panic!("{s:?} should fail: {other:?}"),
    }
}

#[track_caller]
fn bad(s: &str) {
    let e = err(s);
    assert_eq!(e.consumed, s.len(), "{s:?}: {e:?}");
    assert!(e.line_complete);
    assert_eq!(e.kind.response().0, Status::Bad, "{s:?}");
}

fn set(ranges: &[(u32, u32)]) -> SequenceSet {
    SequenceSet::Ranges(
        ranges
            .iter()
            .map(|&(a, b)| {
                let n = |v| {
                    if v == 0 {
                        SeqNum::Star
                    } else {
                        SeqNum::Value(v)
                    }
                };
                (n(a), n(b))
            })
            .collect(),
    )
}

fn mb(s: &str) -> Mailbox {
    Mailbox::new(s)
}

#[test]
fn no_argument_commands() {
    let cases = [
        ("CAPABILITY", Command::Capability),
        ("noop", Command::Noop),
        ("LOGOUT", Command::Logout),
        ("STARTTLS", Command::StartTls),
        ("NAMESPACE", Command::Namespace),
        ("IDLE", Command::Idle),
        ("CHECK", Command::Check),
        ("CLOSE", Command::Close),
        ("UNSELECT", Command::Unselect),
        ("Expunge", Command::Expunge),
        ("UNAUTHENTICATE", Command::Unauthenticate),
    ];
    for (verb, want) in cases {
        let c = parse_with(format!("a1 {verb}\r\n").as_bytes(), &opts());
        assert_eq!(c.tag, "a1");
        assert_eq!(c.command, want);
        bad(&format!("a1 {verb} x\r\n"));
        bad(&format!("a1 {verb} \r\n"));
    }
    // A bare LF is tolerated.
    assert_eq!(cmd("a NOOP\n"), Command::Noop);
}

#[test]
fn tags() {
    let c = parse_with(b"A.1-b]x NOOP\r\n", &opts());
    assert_eq!(c.tag, "A.1-b]x");
    for s in [
        "+a NOOP\r\n",
        "a+ NOOP\r\n",
        " NOOP\r\n",
        "a(b NOOP\r\n",
        "a{ NOOP\r\n",
    ] {
        let e = err(s);
        assert_eq!(e.tag, None, "{s:?}");
    }
    let e = err("x1 FROB\r\n");
    assert_eq!(e.tag.as_deref(), Some("x1"));
    assert_eq!(e.kind, ErrorKind::Unknown("FROB".into()));
    assert_eq!(
        err("x1 UID EXPLODE 1\r\n").kind,
        ErrorKind::Unknown("UID EXPLODE".into())
    );
}

#[test]
fn authenticate() {
    assert_eq!(
        cmd("a AUTHENTICATE plain\r\n"),
        Command::Authenticate {
            mechanism: "PLAIN".into(),
            initial: None
        }
    );
    assert_eq!(
        cmd("a AUTHENTICATE PLAIN AGZyZWQAdGVzdA==\r\n"),
        Command::Authenticate {
            mechanism: "PLAIN".into(),
            initial: Some(Secret(b"\0fred\0test".to_vec()))
        }
    );
    assert_eq!(
        cmd("a AUTHENTICATE EXTERNAL =\r\n"),
        Command::Authenticate {
            mechanism: "EXTERNAL".into(),
            initial: Some(Secret(Vec::new()))
        }
    );
    bad("a AUTHENTICATE PLAIN AGZy\"\r\n");
    bad("a AUTHENTICATE PLAIN AGZ\r\n");
    bad("a AUTHENTICATE\r\n");
    // The secret does not show in Debug output.
    let c = cmd("a AUTHENTICATE PLAIN AGZyZWQAdGVzdA==\r\n");
    assert!(!format!("{c:?}").contains("fred"));
}

#[test]
fn login() {
    assert_eq!(
        cmd("a001 LOGIN SMITH SESAME\r\n"),
        Command::Login {
            username: "SMITH".into(),
            password: Secret(b"SESAME".to_vec())
        }
    );
    assert_eq!(
        cmd("a LOGIN \"fred \\\"x\\\\\" {5}\r\np w\"d\r\n"),
        Command::Login {
            username: "fred \"x\\".into(),
            password: Secret(b"p w\"d".to_vec())
        }
    );
    assert_eq!(
        cmd("a LOGIN {4+}\r\nfred \"\"\r\n"),
        Command::Login {
            username: "fred".into(),
            password: Secret(Vec::new())
        }
    );
    bad("a LOGIN fred\r\n");
    bad("a LOGIN fred pw extra\r\n");
    bad("a LOGIN \"fr\\ed\" pw\r\n");
    bad("a LOGIN \"fred pw\r\n");
    bad("a LOGIN {3}\r\nf\0d pw\r\n");
    let c = cmd("a LOGIN fred hunter2\r\n");
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn enable() {
    assert_eq!(
        cmd("t2 ENABLE CONDSTORE X-GOOD-IDEA\r\n"),
        Command::Enable(vec!["CONDSTORE".into(), "X-GOOD-IDEA".into()])
    );
    bad("t2 ENABLE\r\n");
}

#[test]
fn select_examine() {
    assert_eq!(
        cmd("A142 SELECT INBOX\r\n"),
        Command::Select {
            mailbox: Mailbox::Inbox,
            params: SelectParams::default()
        }
    );
    assert_eq!(
        cmd("A932 EXAMINE blurdybloop\r\n"),
        Command::Examine {
            mailbox: mb("blurdybloop"),
            params: SelectParams::default()
        }
    );
    assert_eq!(
        cmd("a select \"inBox\" (CONDSTORE)\r\n"),
        Command::Select {
            mailbox: Mailbox::Inbox,
            params: SelectParams {
                condstore: true,
                qresync: None
            }
        }
    );
    // RFC 7162 §3.2.5.2.
    assert_eq!(
        cmd("A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n"),
        Command::Select {
            mailbox: Mailbox::Inbox,
            params: SelectParams {
                condstore: false,
                qresync: Some(QResync {
                    uid_validity: 67890007,
                    mod_seq: 20050715194045000,
                    known_uids: Some(set(&[(41, 41), (43, 211), (214, 541)])),
                    seq_match: None
                })
            }
        }
    );
    assert_eq!(
        cmd(
            "B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))\r\n"
        ),
        Command::Select {
            mailbox: Mailbox::Inbox,
            params: SelectParams {
                condstore: false,
                qresync: Some(QResync {
                    uid_validity: 67890007,
                    mod_seq: 90060115194045000,
                    known_uids: Some(set(&[(1, 29997)])),
                    seq_match: Some((
                        set(&[(5000, 5000), (7500, 7500), (9000, 9000), (9990, 9999)]),
                        SequenceSet::from_sorted(&[
                            15000, 22500, 27000, 29970, 29973, 29976, 29979, 29982, 29985, 29988,
                            29991, 29994, 29997
                        ])
                    ))
                })
            }
        }
    );
    assert!(matches!(
        cmd("a SELECT x (QRESYNC (1 2 (1:2 3:4)))\r\n"),
        Command::Select {
            params: SelectParams {
                qresync: Some(QResync {
                    known_uids: None,
                    seq_match: Some(_),
                    ..
                }),
                ..
            },
            ..
        }
    ));
    bad("a SELECT x (FROB)\r\n");
    bad("a SELECT x (CONDSTORE CONDSTORE)\r\n");
    bad("a SELECT x ()\r\n");
    bad("a SELECT x (QRESYNC (0 1))\r\n");
    bad("a SELECT\r\n");
}

#[test]
fn mailbox_names() {
    // Modified UTF-7 decoded (rev1), UTF-8 taken as is (rev2 / UTF8=ACCEPT).
    assert_eq!(
        cmd("a CREATE ~peter/mail/&U,BTFw-/&ZeVnLIqe-\r\n"),
        Command::Create {
            mailbox: mb("~peter/mail/台北/日本語"),
            special_use: vec![]
        }
    );
    let c = parse_with("a CREATE \"台北\"\r\n".as_bytes(), &utf8());
    assert_eq!(
        c.command,
        Command::Create {
            mailbox: mb("台北"),
            special_use: vec![]
        }
    );
    bad("a CREATE \"台北\"\r\n");
    // Not modified UTF-7 but printable: taken as written (no mailbox of that name can be
    // reached otherwise, so a lookup answers NO rather than BAD).
    assert_eq!(
        cmd("a CREATE &Jjo\r\n"),
        Command::Create {
            mailbox: mb("&Jjo"),
            special_use: vec![]
        }
    );
    bad("a CREATE \"&Jjo\u{1}\"\r\n");
    assert_eq!(cmd("a DELETE InBoX\r\n"), Command::Delete(Mailbox::Inbox));
    assert_eq!(
        cmd("a DELETE INBOX.sub\r\n"),
        Command::Delete(mb("INBOX.sub"))
    );
    assert_eq!(cmd("a DELETE \"\"\r\n"), Command::Delete(mb("")));
    assert_eq!(cmd("a DELETE {3}\r\nfoo\r\n"), Command::Delete(mb("foo")));
}

#[test]
fn create_delete_rename_subscribe() {
    assert_eq!(
        cmd("t1 CREATE \"Important Messages\" (USE (\\Important \\Sent))\r\n"),
        Command::Create {
            mailbox: mb("Important Messages"),
            special_use: vec!["Important".into(), "Sent".into()]
        }
    );
    bad("t1 CREATE x (USE ())\r\n");
    bad("t1 CREATE x (USE (Sent))\r\n");
    assert_eq!(
        cmd("A683 RENAME blurdybloop sarasoop\r\n"),
        Command::Rename {
            from: mb("blurdybloop"),
            to: mb("sarasoop")
        }
    );
    assert_eq!(
        cmd("A002 SUBSCRIBE #news.comp.mail.mime\r\n"),
        Command::Subscribe(mb("#news.comp.mail.mime"))
    );
    assert_eq!(
        cmd("A002 UNSUBSCRIBE #news.comp.mail.mime\r\n"),
        Command::Unsubscribe(mb("#news.comp.mail.mime"))
    );
    bad("A683 RENAME blurdybloop\r\n");
    bad("A683 DELETE a b\r\n");
}

#[test]
fn list() {
    assert_eq!(
        cmd("A101 LIST \"\" \"\"\r\n"),
        Command::List(List {
            reference: "".into(),
            patterns: vec!["".into()],
            ..List::default()
        })
    );
    assert_eq!(
        cmd("A202 LIST ~/Mail/ %\r\n"),
        Command::List(List {
            reference: "~/Mail/".into(),
            patterns: vec!["%".into()],
            ..List::default()
        })
    );
    assert_eq!(
        cmd(
            "A02 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"%\" \"foo/*\") RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN SIZE))\r\n"
        ),
        Command::List(List {
            select: vec![ListSelect::Subscribed, ListSelect::RecursiveMatch],
            reference: "".into(),
            patterns: vec!["%".into(), "foo/*".into()],
            returns: vec![
                ListReturn::Children,
                ListReturn::SpecialUse,
                ListReturn::Status(vec![
                    StatusItem::Messages,
                    StatusItem::Unseen,
                    StatusItem::Size
                ])
            ],
        })
    );
    assert_eq!(
        cmd("t1 LIST (SPECIAL-USE) \"\" *\r\n"),
        Command::List(List {
            select: vec![ListSelect::SpecialUse],
            reference: "".into(),
            patterns: vec!["*".into()],
            returns: vec![],
        })
    );
    assert_eq!(
        cmd("a LIST () \"\" % RETURN ()\r\n"),
        Command::List(List {
            reference: "".into(),
            patterns: vec!["%".into()],
            ..List::default()
        })
    );
    assert_eq!(
        cmd("a LIST \"\" &U,BTFw-/*\r\n"),
        Command::List(List {
            reference: "".into(),
            patterns: vec!["台北/*".into()],
            ..List::default()
        })
    );
    bad("a LIST (RECURSIVEMATCH) \"\" %\r\n");
    bad("a LIST (FROB) \"\" %\r\n");
    bad("a LIST \"\" % RETURN (FROB)\r\n");
    bad("a LIST \"\"\r\n");
    bad("a LIST \"\" ()\r\n");
    assert_eq!(
        cmd("A002 LSUB \"#news.\" \"comp.mail.*\"\r\n"),
        Command::Lsub {
            reference: "#news.".into(),
            pattern: "comp.mail.*".into()
        }
    );
}

#[test]
fn status() {
    assert_eq!(
        cmd("A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n"),
        Command::Status {
            mailbox: mb("blurdybloop"),
            items: vec![StatusItem::UidNext, StatusItem::Messages]
        }
    );
    assert_eq!(
        cmd(
            "a STATUS INBOX (size highestmodseq appendlimit mailboxid deleted recent unseen uidvalidity)\r\n"
        ),
        Command::Status {
            mailbox: Mailbox::Inbox,
            items: vec![
                StatusItem::Size,
                StatusItem::HighestModSeq,
                StatusItem::AppendLimit,
                StatusItem::MailboxId,
                StatusItem::Deleted,
                StatusItem::Recent,
                StatusItem::Unseen,
                StatusItem::UidValidity
            ]
        }
    );
    bad("a STATUS INBOX ()\r\n");
    bad("a STATUS INBOX (FROB)\r\n");
    bad("a STATUS INBOX MESSAGES\r\n");
}

#[test]
fn append_buffered() {
    let o = Options {
        stream_append: false,
        ..opts()
    };
    let msg = "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nSubject: afternoon meeting\r\n\r\nHello Joe\r\n";
    let s = format!(
        "A003 APPEND saved-messages (\\Seen) \"07-Feb-1994 21:52:25 -0800\" {{{}}}\r\n{msg}\r\n",
        msg.len()
    );
    let c = parse_with(s.as_bytes(), &o);
    assert_eq!(
        c.command,
        Command::Append {
            mailbox: mb("saved-messages"),
            messages: vec![AppendMessage {
                flags: vec![Flag::Seen],
                date: Some(DateTime {
                    date: Date {
                        year: 1994,
                        month: 2,
                        day: 7
                    },
                    hour: 21,
                    minute: 52,
                    second: 25,
                    zone: -480
                }),
                binary: false,
                data: msg.as_bytes().to_vec()
            }]
        }
    );
    // MULTIAPPEND, LITERAL+, a binary literal, a one-digit day.
    let c = parse_with(
        b"a APPEND INBOX {3+}\r\nabc (\\Draft $Fwd) \" 1-Jan-2024 00:00:00 +0130\" ~{2+}\r\na\0\r\n",
        &o,
    );
    let Command::Append { messages, .. } = c.command else {
        panic!()
    };
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].data, b"abc");
    assert_eq!(
        messages[1].flags,
        vec![Flag::Draft, Flag::Keyword("$Fwd".into())]
    );
    assert_eq!(messages[1].date.unwrap().zone, 90);
    assert!(messages[1].binary);
    assert_eq!(messages[1].data, b"a\0");
    // Refused at the end of the command, or at the literal's announcement when what comes
    // before it is already wrong (the client is not invited to send the message).
    for (s, at_announcement) in [
        ("a APPEND INBOX\r\n", false),
        ("a APPEND INBOX (\\Seen)\r\n", false),
        ("a APPEND INBOX \"07-Feb-1994 21:52:25\" {1}\r\nx\r\n", true),
        (
            "a APPEND INBOX \"07-Foo-1994 21:52:25 -0800\" {1}\r\nx\r\n",
            true,
        ),
        (
            "a APPEND INBOX \"07-Feb-1994 25:52:25 -0800\" {1}\r\nx\r\n",
            true,
        ),
        ("a APPEND INBOX {2}\r\nx\0\r\n", false),
        ("a APPEND INBOX {1}\r\nx x\r\n", false),
    ] {
        let want = if at_announcement {
            s.find('\n').unwrap() + 1
        } else {
            s.len()
        };
        match decode_command(s.as_bytes(), &o) {
            Err(e) => assert_eq!(e.consumed, want, "{s:?}"),
            other => panic!("{s:?}: {other:?}"),
        }
    }
}

#[test]
fn simple_selected_commands() {
    assert_eq!(
        cmd("a UID EXPUNGE 3000:3002\r\n"),
        Command::UidExpunge(set(&[(3000, 3002)]))
    );
    assert_eq!(
        cmd("A003 COPY 2:4 MEETING\r\n"),
        Command::Copy {
            uid: false,
            set: set(&[(2, 4)]),
            mailbox: mb("MEETING")
        }
    );
    assert_eq!(
        cmd("a UID MOVE 42:69 foo\r\n"),
        Command::Move {
            uid: true,
            set: set(&[(42, 69)]),
            mailbox: mb("foo")
        }
    );
    assert_eq!(
        cmd("a uid copy $ Trash\r\n"),
        Command::Copy {
            uid: true,
            set: SequenceSet::Saved,
            mailbox: mb("Trash")
        }
    );
    bad("a COPY 0 x\r\n");
    bad("a COPY 1: x\r\n");
    bad("a COPY 1,,2 x\r\n");
    bad("a COPY 4294967296 x\r\n");
    bad("a EXPUNGE 1\r\n");
    bad("a MOVE 1\r\n");
}

#[test]
fn sequence_sets() {
    let Command::Copy { set: s, .. } = cmd("a COPY 5:2,*,7:*,1 x\r\n") else {
        panic!()
    };
    assert_eq!(s, set(&[(5, 2), (0, 0), (7, 0), (1, 1)]));
    assert!(s.contains(3, 10));
    assert!(s.contains(10, 10));
    assert!(!s.contains(6, 10));
    assert!(s.contains(6, 6), "7:* is 6:7 when 6 is the largest");
    assert_eq!(s.to_string(), "5:2,*,7:*,1");
    assert_eq!(
        SequenceSet::from_sorted(&[1, 2, 3, 5, 7, 8]).to_string(),
        "1:3,5,7:8"
    );
    // The limit on ranges is per command.
    let o = Options {
        limits: Limits {
            max_ranges: 3,
            ..Limits::default()
        },
        ..opts()
    };
    assert!(decode_command(b"a COPY 1,2,3 x\r\n", &o).is_ok());
    let e = decode_command(b"a COPY 1,2,3,4 x\r\n", &o).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooManyRanges);
    assert_eq!(e.tag.as_deref(), Some("a"));
}

#[test]
fn search() {
    let s = |q: &str| match cmd(&format!("a SEARCH {q}\r\n")) {
        Command::Search { criteria, .. } => criteria,
        c => panic!("{c:?}"),
    };
    use SearchKey as K;
    assert_eq!(
        cmd("A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n"),
        Command::Search {
            uid: false,
            ret: Some(vec![SearchReturn::Min, SearchReturn::Count]),
            charset: None,
            criteria: K::And(vec![
                K::Flagged,
                K::Since(Date {
                    year: 1994,
                    month: 2,
                    day: 1
                }),
                K::Not(Box::new(K::From(b"Smith".to_vec())))
            ])
        }
    );
    assert_eq!(
        cmd(
            "A284 SEARCH CHARSET UTF-8 TEXT {14}\r\n\u{422}\u{435}\u{441}\u{442}\u{43e}\u{432}\u{44b}\r\n"
        ),
        Command::Search {
            uid: false,
            ret: None,
            charset: Some("UTF-8".into()),
            criteria: K::Text("Тестовы".as_bytes().to_vec())
        }
    );
    assert_eq!(
        cmd("a UID SEARCH RETURN () uid 1:* UNDELETED\r\n"),
        Command::Search {
            uid: true,
            ret: Some(vec![]),
            charset: None,
            criteria: K::And(vec![K::Uid(set(&[(1, 0)])), K::Undeleted])
        }
    );
    assert_eq!(
        s("OR (SEEN FLAGGED) NOT ANSWERED"),
        K::Or(
            Box::new(K::And(vec![K::Seen, K::Flagged])),
            Box::new(K::Not(Box::new(K::Answered)))
        )
    );
    // RFC 7162 §3.1.5.
    assert_eq!(
        s("MODSEQ \"/flags/\\\\draft\" all 620162338"),
        K::ModSeq {
            entry: Some(("/flags/\\draft".into(), EntryType::All)),
            mod_seq: 620162338
        }
    );
    assert_eq!(
        s("MODSEQ 5"),
        K::ModSeq {
            entry: None,
            mod_seq: 5
        }
    );
    assert_eq!(s("YOUNGER 3600"), K::Younger(3600));
    assert_eq!(s("OLDER 1"), K::Older(1));
    assert_eq!(s("$"), K::SequenceSet(SequenceSet::Saved));
    assert_eq!(s("1:3,*"), K::SequenceSet(set(&[(1, 3), (0, 0)])));
    assert_eq!(
        s("HEADER Message-ID \"<x@y>\""),
        K::Header("Message-ID".into(), b"<x@y>".to_vec())
    );
    assert_eq!(s("LARGER 9223372036854775807"), K::Larger(i64::MAX as u64));
    assert_eq!(s("KEYWORD $Junk"), K::Keyword("$Junk".into()));
    assert_eq!(s("UNKEYWORD foo"), K::Unkeyword("foo".into()));
    assert_eq!(
        s("EMAILID M6d99ac3275bb4e"),
        K::EmailId("M6d99ac3275bb4e".into())
    );
    assert_eq!(
        s("THREADID T64b478a75b7ea9"),
        K::ThreadId("T64b478a75b7ea9".into())
    );
    assert_eq!(
        s("SENTBEFORE \"5-Mar-2020\""),
        K::SentBefore(Date {
            year: 2020,
            month: 3,
            day: 5
        })
    );
    let all_simple = "ALL ANSWERED DELETED DRAFT FLAGGED NEW OLD RECENT SEEN UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNSEEN SAVEDATESUPPORTED";
    assert!(matches!(s(all_simple), K::And(v) if v.len() == 15));
    let dated = "BEFORE 1-Jan-2000 ON 1-Jan-2000 SINCE 1-Jan-2000 SENTON 1-Jan-2000 SENTSINCE 1-Jan-2000 SAVEDBEFORE 1-Jan-2000 SAVEDON 1-Jan-2000 SAVEDSINCE 1-Jan-2000";
    assert!(matches!(s(dated), K::And(v) if v.len() == 8));
    let strings = "BCC a BODY b CC c FROM d SUBJECT e TEXT f TO g SMALLER 10";
    assert!(matches!(s(strings), K::And(v) if v.len() == 8));
    assert_eq!(
        parse_with(
            b"a SEARCH RETURN (SAVE) CHARSET \"ISO-8859-1\" BODY {1}\r\n\xe9\r\n",
            &opts()
        )
        .command,
        Command::Search {
            uid: false,
            ret: Some(vec![SearchReturn::Save]),
            charset: Some("ISO-8859-1".into()),
            criteria: K::Body(vec![0xe9])
        }
    );
    for q in [
        "",
        "FROB",
        "SINCE 1-Feb",
        "SINCE 32-Feb-1994",
        "OR SEEN",
        "NOT",
        "(SEEN",
        "()",
        "YOUNGER 0",
        "RETURN (FROB) ALL",
        "MODSEQ \"/flags/\\\\draft\" any 1",
        "HEADER x",
        "LARGER -1",
        "LARGER 9223372036854775808",
    ] {
        bad(&format!("a SEARCH {q}\r\n"));
    }
}

#[test]
fn search_nesting_is_bounded() {
    let deep = |n: usize| format!("a SEARCH {}SEEN{}\r\n", "(".repeat(n), ")".repeat(n));
    assert!(matches!(cmd(&deep(31)), Command::Search { .. }));
    assert_eq!(err(&deep(33)).kind, ErrorKind::TooDeep);
    let nots = |n: usize| format!("a SEARCH {}SEEN\r\n", "NOT ".repeat(n));
    assert!(matches!(cmd(&nots(32)), Command::Search { .. }));
    assert_eq!(err(&nots(33)).kind, ErrorKind::TooDeep);
    let ors = |n: usize| format!("a SEARCH {}SEEN{}\r\n", "OR ".repeat(n), " SEEN".repeat(n));
    assert!(matches!(cmd(&ors(32)), Command::Search { .. }));
    assert_eq!(err(&ors(33)).kind, ErrorKind::TooDeep);
}

#[test]
fn fetch() {
    use FetchAttr as A;
    let f = |s: &str| match cmd(s) {
        Command::Fetch { items, .. } => items,
        c => panic!("{c:?}"),
    };
    assert_eq!(
        cmd("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n"),
        Command::Fetch {
            uid: false,
            set: set(&[(2, 4)]),
            items: FetchItems::Attrs(vec![
                A::Flags,
                A::BodySection {
                    peek: false,
                    section: Section {
                        part: vec![],
                        text: Some(SectionText::HeaderFields(vec![
                            "DATE".into(),
                            "FROM".into()
                        ]))
                    },
                    partial: None
                }
            ]),
            changed_since: None,
            vanished: false
        }
    );
    assert_eq!(f("a FETCH 1 ALL\r\n"), FetchItems::All);
    assert_eq!(f("a FETCH 1 fast\r\n"), FetchItems::Fast);
    assert_eq!(f("a FETCH 1 FULL\r\n"), FetchItems::Full);
    assert_eq!(f("a FETCH 1 UID\r\n"), FetchItems::Attrs(vec![A::Uid]));
    assert_eq!(
        f(
            "a FETCH 1 (ENVELOPE FLAGS INTERNALDATE RFC822 RFC822.HEADER RFC822.SIZE RFC822.TEXT BODY BODYSTRUCTURE UID MODSEQ EMAILID THREADID SAVEDATE PREVIEW)\r\n"
        ),
        FetchItems::Attrs(vec![
            A::Envelope,
            A::Flags,
            A::InternalDate,
            A::Rfc822,
            A::Rfc822Header,
            A::Rfc822Size,
            A::Rfc822Text,
            A::Body,
            A::BodyStructure,
            A::Uid,
            A::ModSeq,
            A::EmailId,
            A::ThreadId,
            A::SaveDate,
            A::Preview { lazy: false }
        ])
    );
    assert_eq!(
        f(
            "a FETCH 1 (BODY.PEEK[1.2.MIME]<0.100> BODY[] BODY[3] BODY[4.TEXT] BODY[HEADER.FIELDS.NOT (X-A \"X B\")] BODY[TEXT]<5.1>)\r\n"
        ),
        FetchItems::Attrs(vec![
            A::BodySection {
                peek: true,
                section: Section {
                    part: vec![1, 2],
                    text: Some(SectionText::Mime)
                },
                partial: Some((0, 100))
            },
            A::BodySection {
                peek: false,
                section: Section::default(),
                partial: None
            },
            A::BodySection {
                peek: false,
                section: Section {
                    part: vec![3],
                    text: None
                },
                partial: None
            },
            A::BodySection {
                peek: false,
                section: Section {
                    part: vec![4],
                    text: Some(SectionText::Text)
                },
                partial: None
            },
            A::BodySection {
                peek: false,
                section: Section {
                    part: vec![],
                    text: Some(SectionText::HeaderFieldsNot(vec![
                        "X-A".into(),
                        "X B".into()
                    ]))
                },
                partial: None
            },
            A::BodySection {
                peek: false,
                section: Section {
                    part: vec![],
                    text: Some(SectionText::Text)
                },
                partial: Some((5, 1))
            },
        ])
    );
    assert_eq!(
        f("a FETCH 1 (BINARY[1.2] BINARY.PEEK[]<0.10> BINARY.SIZE[3] PREVIEW (LAZY))\r\n"),
        FetchItems::Attrs(vec![
            A::Binary {
                peek: false,
                part: vec![1, 2],
                partial: None
            },
            A::Binary {
                peek: true,
                part: vec![],
                partial: Some((0, 10))
            },
            A::BinarySize(vec![3]),
            A::Preview { lazy: true },
        ])
    );
    // RFC 7162 §3.1.4.1 and RFC 7162 §3.2.6.
    assert_eq!(
        cmd("s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)\r\n"),
        Command::Fetch {
            uid: true,
            set: set(&[(1, 0)]),
            items: FetchItems::Attrs(vec![A::Flags]),
            changed_since: Some(12345),
            vanished: false
        }
    );
    assert_eq!(
        cmd("A04 UID FETCH 1:* FLAGS (CHANGEDSINCE 20050715194045000 VANISHED)\r\n"),
        Command::Fetch {
            uid: true,
            set: set(&[(1, 0)]),
            items: FetchItems::Attrs(vec![A::Flags]),
            changed_since: Some(20050715194045000),
            vanished: true
        }
    );
    assert!(matches!(
        cmd("a FETCH 1 PREVIEW (CHANGEDSINCE 1)\r\n"),
        Command::Fetch {
            changed_since: Some(1),
            ..
        }
    ));
    for s in [
        "a FETCH 1 (FROB)",
        "a FETCH 1 ()",
        "a FETCH 1 BODY[MIME]",
        "a FETCH 1 BODY[0]",
        "a FETCH 1 BODY[1.]",
        "a FETCH 1 BODY[HEADER.FIELDS ()]",
        "a FETCH 1 BODY[HEADER.FIELDS]",
        "a FETCH 1 BODY[]<1>",
        "a FETCH 1 BODY[]<1.0>",
        "a FETCH 1 BINARY[TEXT]",
        "a FETCH 1 BINARY.SIZE",
        "a FETCH 1 FLAGS (VANISHED)",
        "a UID FETCH 1 FLAGS (VANISHED)",
        "a FETCH 1 FLAGS (CHANGEDSINCE 1 CHANGEDSINCE 2)",
        "a FETCH 1 (FLAGS",
        "a FETCH 1 ALL FAST",
        "a FETCH (FLAGS)",
    ] {
        bad(&format!("{s}\r\n"));
    }
}

#[test]
fn store() {
    assert_eq!(
        cmd("A003 STORE 2:4 +FLAGS (\\Deleted)\r\n"),
        Command::Store {
            uid: false,
            set: set(&[(2, 4)]),
            unchanged_since: None,
            mode: StoreMode::Add,
            silent: false,
            flags: vec![Flag::Deleted]
        }
    );
    assert_eq!(
        cmd("d105 UID STORE 7,5,9 (UNCHANGEDSINCE 320162338) -FLAGS.SILENT \\Seen $Junk\r\n"),
        Command::Store {
            uid: true,
            set: set(&[(7, 7), (5, 5), (9, 9)]),
            unchanged_since: Some(320162338),
            mode: StoreMode::Remove,
            silent: true,
            flags: vec![Flag::Seen, Flag::Keyword("$Junk".into())]
        }
    );
    assert!(matches!(
        cmd("a STORE 1 FLAGS ()\r\n"),
        Command::Store { mode: StoreMode::Replace, ref flags, .. } if flags.is_empty()
    ));
    assert!(matches!(
        cmd("a STORE 1 FLAGS (\\answered \\FLAGGED \\Draft \\X-Ext)\r\n"),
        Command::Store { ref flags, .. } if *flags == vec![Flag::Answered, Flag::Flagged, Flag::Draft, Flag::Extension("X-Ext".into())]
    ));
    bad("a STORE 1 *FLAGS (\\Seen)\r\n");
    bad("a STORE 1 FLAGS\r\n");
    bad("a STORE 1 FLAGS.LOUD (\\Seen)\r\n");
    bad("a STORE 1 (UNCHANGEDSINCE) FLAGS (\\Seen)\r\n");
    bad("a STORE 1 FLAGS (\\Seen\r\n");
    bad("a STORE 1 FLAGS (a]b)\r\n");
}

#[test]
fn sort_and_thread() {
    use SearchKey as K;
    // RFC 5256 §3.
    assert_eq!(
        cmd("A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994\r\n"),
        Command::Sort {
            uid: false,
            ret: None,
            criteria: vec![SortCriterion {
                reverse: false,
                key: SortKey::Subject
            }],
            charset: "UTF-8".into(),
            search: K::Since(Date {
                year: 1994,
                month: 2,
                day: 1
            })
        }
    );
    assert_eq!(
        cmd("A285 UID SORT (SUBJECT REVERSE DATE DISPLAYFROM) UTF-8 ALL\r\n"),
        Command::Sort {
            uid: true,
            ret: None,
            criteria: vec![
                SortCriterion {
                    reverse: false,
                    key: SortKey::Subject
                },
                SortCriterion {
                    reverse: true,
                    key: SortKey::Date
                },
                SortCriterion {
                    reverse: false,
                    key: SortKey::DisplayFrom
                },
            ],
            charset: "UTF-8".into(),
            search: K::All
        }
    );
    // RFC 5267 §3.2 (ESORT).
    assert_eq!(
        cmd("A301 UID SORT RETURN (COUNT ALL) (DATE) UTF-8 UNDELETED UNKEYWORD $Junk\r\n"),
        Command::Sort {
            uid: true,
            ret: Some(vec![SearchReturn::Count, SearchReturn::All]),
            criteria: vec![SortCriterion {
                reverse: false,
                key: SortKey::Date
            }],
            charset: "UTF-8".into(),
            search: K::And(vec![K::Undeleted, K::Unkeyword("$Junk".into())])
        }
    );
    assert_eq!(
        cmd("A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000\r\n"),
        Command::Thread {
            uid: false,
            algorithm: ThreadAlgorithm::OrderedSubject,
            charset: "UTF-8".into(),
            search: K::Since(Date {
                year: 2000,
                month: 3,
                day: 5
            })
        }
    );
    assert!(matches!(
        cmd("A284 UID THREAD REFERENCES US-ASCII TEXT \"gewp\"\r\n"),
        Command::Thread {
            uid: true,
            algorithm: ThreadAlgorithm::References,
            ..
        }
    ));
    for s in [
        "a SORT () UTF-8 ALL",
        "a SORT (REVERSE) UTF-8 ALL",
        "a SORT (REVERSE REVERSE DATE) UTF-8 ALL",
        "a SORT (FOO) UTF-8 ALL",
        "a SORT (DATE) UTF-8",
        "a SORT (DATE) ALL",
        "a THREAD FOO UTF-8 ALL",
        "a THREAD REFERENCES UTF-8",
    ] {
        bad(&format!("{s}\r\n"));
    }
}

#[test]
fn quota_id_compress() {
    assert_eq!(
        cmd("G0001 GETQUOTA \"!partition/sda4\"\r\n"),
        Command::GetQuota("!partition/sda4".into())
    );
    assert_eq!(
        cmd("A003 GETQUOTAROOT INBOX\r\n"),
        Command::GetQuotaRoot(Mailbox::Inbox)
    );
    assert_eq!(
        cmd("S0000 SETQUOTA \"#user/alice\" (Storage 510 message 1000)\r\n"),
        Command::SetQuota {
            root: "#user/alice".into(),
            limits: vec![("STORAGE".into(), 510), ("MESSAGE".into(), 1000)]
        }
    );
    assert_eq!(
        cmd("a SETQUOTA \"\" ()\r\n"),
        Command::SetQuota {
            root: "".into(),
            limits: vec![]
        }
    );
    assert_eq!(
        cmd("a023 ID (\"name\" \"sodr\" \"version\" \"19.34\" \"vendor\" NIL)\r\n"),
        Command::Id(Some(vec![
            ("name".into(), Some("sodr".into())),
            ("version".into(), Some("19.34".into())),
            ("vendor".into(), None)
        ]))
    );
    assert_eq!(cmd("a ID NIL\r\n"), Command::Id(None));
    assert_eq!(cmd("a ID ()\r\n"), Command::Id(Some(vec![])));
    assert_eq!(
        cmd("a COMPRESS deflate\r\n"),
        Command::Compress("DEFLATE".into())
    );
    let many = (0..31)
        .map(|i| format!("\"k{i}\" NIL"))
        .collect::<Vec<_>>()
        .join(" ");
    bad(&format!("a ID ({many})\r\n"));
    bad("a ID (name \"x\")\r\n");
    bad("a ID (\"name\")\r\n");
    bad("a COMPRESS\r\n");
    bad("a SETQUOTA x (STORAGE)\r\n");
}

#[test]
fn idle_done_and_auth_lines() {
    assert_eq!(decode_idle_done(b"DO"), Ok(None));
    assert_eq!(decode_idle_done(b"done\r\nx"), Ok(Some(6)));
    let e = decode_idle_done(b"a NOOP\r\n").unwrap_err();
    assert_eq!(e.consumed, 8);
    assert_eq!(
        decode_auth_line(b"*\r\n", 100),
        Ok(Some((AuthLine::Cancel, 3)))
    );
    assert_eq!(
        decode_auth_line(b"AGZyZWQAdGVzdA==\r\n", 100),
        Ok(Some((
            AuthLine::Response(Secret(b"\0fred\0test".to_vec())),
            18
        )))
    );
    assert_eq!(
        decode_auth_line(b"\r\n", 100),
        Ok(Some((AuthLine::Response(Secret(vec![])), 2)))
    );
    assert!(decode_auth_line(b"AGZ\r\n", 100).is_err());
    let e = decode_auth_line(&[b'A'; 100], 100).unwrap_err();
    assert!(!e.line_complete);
    assert_eq!(base64_encode(b"\0fred\0test"), "AGZyZWQAdGVzdA==");
    for n in 0..10 {
        let data: Vec<u8> = (0..n).map(|i: u8| i.wrapping_mul(37)).collect();
        assert_eq!(base64_decode(base64_encode(&data).as_bytes()), Some(data));
    }
}

/// The client commands of RFC 9051 §6's examples, as written there, all decode, to the command
/// they are examples of.
#[test]
fn rfc9051_section6_examples() {
    let examples: &[(&str, &str)] = &[
        ("abcd CAPABILITY\r\n", "CAPABILITY"),
        ("a002 NOOP\r\n", "NOOP"),
        ("A023 LOGOUT\r\n", "LOGOUT"),
        ("a002 STARTTLS\r\n", "STARTTLS"),
        ("A001 AUTHENTICATE GSSAPI\r\n", "AUTHENTICATE"),
        (
            "A001 AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n",
            "AUTHENTICATE",
        ),
        ("a001 LOGIN SMITH SESAME\r\n", "LOGIN"),
        ("t2 ENABLE CONDSTORE X-GOOD-IDEA\r\n", "ENABLE"),
        ("A142 SELECT INBOX\r\n", "SELECT"),
        ("A932 EXAMINE blurdybloop\r\n", "EXAMINE"),
        ("A003 CREATE owatagusiam/\r\n", "CREATE"),
        ("A004 CREATE owatagusiam/blurdybloop\r\n", "CREATE"),
        ("A682 LIST \"\" *\r\n", "LIST"),
        ("A683 DELETE blurdybloop\r\n", "DELETE"),
        ("A685 DELETE foo/bar\r\n", "DELETE"),
        ("A687 RENAME foo/bar sarasoop\r\n", "RENAME"),
        ("A683 RENAME blurdybloop sarasoop\r\n", "RENAME"),
        ("A002 SUBSCRIBE #news.comp.mail.mime\r\n", "SUBSCRIBE"),
        ("A002 UNSUBSCRIBE #news.comp.mail.mime\r\n", "UNSUBSCRIBE"),
        ("A101 LIST \"\" \"\"\r\n", "LIST"),
        ("A102 LIST #news.comp.mail.misc \"\"\r\n", "LIST"),
        ("A103 LIST /usr/staff/jones \"\"\r\n", "LIST"),
        ("A202 LIST ~/Mail/ %\r\n", "LIST"),
        ("A01 LIST \"\" %\r\n", "LIST"),
        ("A02 LIST (SUBSCRIBED) \"\" *\r\n", "LIST"),
        ("A03 LIST () \"\" % RETURN (CHILDREN)\r\n", "LIST"),
        ("A04 LIST (REMOTE) \"\" % RETURN (CHILDREN)\r\n", "LIST"),
        ("A05 LIST (REMOTE SUBSCRIBED) \"\" *\r\n", "LIST"),
        ("A06 LIST (REMOTE) \"\" % RETURN (SUBSCRIBED)\r\n", "LIST"),
        ("A07 LIST \"\" \"\"\r\n", "LIST"),
        ("C04 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" %\r\n", "LIST"),
        (
            "C05 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" % RETURN (SUBSCRIBED)\r\n",
            "LIST",
        ),
        (
            "D01 LIST (RECURSIVEMATCH SUBSCRIBED) \"\" \"Foo/Bar/%\"\r\n",
            "LIST",
        ),
        (
            "B01 LIST \"\" (\"INBOX\" \"Drafts\" \"Sent/%\")\r\n",
            "LIST",
        ),
        (
            "A1 LIST \"\" % RETURN (STATUS (MESSAGES UNSEEN))\r\n",
            "LIST",
        ),
        ("A02 NAMESPACE\r\n", "NAMESPACE"),
        ("A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n", "STATUS"),
        ("A341 CLOSE\r\n", "CLOSE"),
        ("A202 EXPUNGE\r\n", "EXPUNGE"),
        (
            "A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n",
            "SEARCH",
        ),
        (
            "A283 SEARCH RETURN () FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n",
            "SEARCH",
        ),
        ("A284 SEARCH TEXT \"string not in mailbox\"\r\n", "SEARCH"),
        (
            "A285 SEARCH CHARSET UTF-8 TEXT {12}\r\n\u{0422}\u{0435}\u{0441}\u{0442}\u{0438}\u{043a}\r\n",
            "SEARCH",
        ),
        ("A286 SEARCH CHARSET US-ASCII TEXT \"string\"\r\n", "SEARCH"),
        (
            "A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n",
            "FETCH",
        ),
        ("A003 STORE 2:4 +FLAGS (\\Deleted)\r\n", "STORE"),
        ("A003 COPY 2:4 MEETING\r\n", "COPY"),
        ("a UID MOVE 42:69 foo\r\n", "MOVE"),
        ("A999 UID FETCH 4827313:4828442 FLAGS\r\n", "FETCH"),
        ("A003 UID EXPUNGE 3000:3002\r\n", "UID EXPUNGE"),
        ("A002 IDLE\r\n", "IDLE"),
        ("A341 UNSELECT\r\n", "UNSELECT"),
        ("FXXZ CHECK\r\n", "CHECK"),
    ];
    for (s, name) in examples {
        assert_eq!(cmd(s).name(), *name, "{s:?}");
    }
}
