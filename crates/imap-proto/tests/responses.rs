//! The response encoder: exact bytes for every kind of response, the examples of RFC 9051
//! and its extensions, and strings quoted or sent as literals as their bytes require.

use mailfleet_imap_proto::*;

#[track_caller]
fn enc(r: Response) -> String {
    String::from_utf8(r.to_bytes()).unwrap()
}

#[track_caller]
fn enc_utf8(r: Response) -> String {
    let mut out = Vec::new();
    r.encode(&mut out, EncodeOptions { utf8: true });
    String::from_utf8(out).unwrap()
}

fn untagged(d: Data) -> String {
    enc(Response::Untagged(d))
}

fn set(s: &[(u32, u32)]) -> SequenceSet {
    SequenceSet::Ranges(
        s.iter()
            .map(|&(a, b)| (SeqNum::Value(a), SeqNum::Value(b)))
            .collect(),
    )
}

#[test]
fn tagged_and_conditions() {
    assert_eq!(
        enc(Response::tagged(
            "a001",
            Status::Ok,
            None,
            "LOGIN completed"
        )),
        "a001 OK LOGIN completed\r\n"
    );
    assert_eq!(
        enc(Response::tagged(
            "A142",
            Status::Ok,
            Some(Code::ReadWrite),
            "SELECT completed"
        )),
        "A142 OK [READ-WRITE] SELECT completed\r\n"
    );
    assert_eq!(
        enc(Response::tagged("a", Status::No, Some(Code::TooBig), "")),
        "a NO [TOOBIG]\r\n"
    );
    // Text never breaks the line.
    assert_eq!(
        enc(Response::tagged(
            "a",
            Status::Bad,
            None,
            "bad\r\n* OK injected"
        )),
        "a BAD bad  * OK injected\r\n"
    );
    assert_eq!(
        untagged(Data::Condition {
            status: Status::Bye,
            code: None,
            text: "IMAP4rev2 Server logging out".into()
        }),
        "* BYE IMAP4rev2 Server logging out\r\n"
    );
    assert_eq!(
        untagged(Data::Condition {
            status: Status::PreAuth,
            code: Some(Code::Capability(vec!["IMAP4rev2".into(), "IDLE".into()])),
            text: "ready".into()
        }),
        "* PREAUTH [CAPABILITY IMAP4rev2 IDLE] ready\r\n"
    );
    assert_eq!(enc(Response::Continue("Ready".into())), "+ Ready\r\n");
    assert_eq!(enc(Response::Continue(String::new())), "+ \r\n");
    assert_eq!(
        enc(Response::Challenge(b"\0fred".to_vec())),
        "+ AGZyZWQ=\r\n"
    );
}

#[test]
fn every_response_code() {
    let cases: Vec<(Code, &str)> = vec![
        (Code::Alert, "ALERT"),
        (Code::AlreadyExists, "ALREADYEXISTS"),
        (
            Code::AppendUid {
                uid_validity: 38505,
                uids: set(&[(3955, 3955)]),
            },
            "APPENDUID 38505 3955",
        ),
        (Code::AuthenticationFailed, "AUTHENTICATIONFAILED"),
        (Code::AuthorizationFailed, "AUTHORIZATIONFAILED"),
        (Code::BadCharset(vec![]), "BADCHARSET"),
        (
            Code::BadCharset(vec!["UTF-8".into(), "US-ASCII".into()]),
            "BADCHARSET (UTF-8 US-ASCII)",
        ),
        (Code::Cannot, "CANNOT"),
        (
            Code::Capability(vec!["IMAP4rev2".into(), "AUTH=PLAIN".into()]),
            "CAPABILITY IMAP4rev2 AUTH=PLAIN",
        ),
        (Code::ClientBug, "CLIENTBUG"),
        (Code::Closed, "CLOSED"),
        (Code::ContactAdmin, "CONTACTADMIN"),
        (
            Code::CopyUid {
                uid_validity: 38505,
                source: set(&[(304, 304), (319, 320)]),
                dest: set(&[(3956, 3958)]),
            },
            "COPYUID 38505 304,319:320 3956:3958",
        ),
        (Code::Corruption, "CORRUPTION"),
        (Code::Expired, "EXPIRED"),
        (Code::ExpungeIssued, "EXPUNGEISSUED"),
        (Code::HasChildren, "HASCHILDREN"),
        (
            Code::HighestModSeq(715194045007),
            "HIGHESTMODSEQ 715194045007",
        ),
        (Code::InUse, "INUSE"),
        (Code::Limit, "LIMIT"),
        (
            Code::MailboxId("F2212ea87-6097-4256-9d51-71338625".into()),
            "MAILBOXID (F2212ea87-6097-4256-9d51-71338625)",
        ),
        (Code::Modified(set(&[(7, 7), (9, 9)])), "MODIFIED 7,9"),
        (Code::NoModSeq, "NOMODSEQ"),
        (Code::NonExistent, "NONEXISTENT"),
        (Code::NoPerm, "NOPERM"),
        (Code::NotSaved, "NOTSAVED"),
        (Code::OverQuota, "OVERQUOTA"),
        (Code::Parse, "PARSE"),
        (
            Code::PermanentFlags(vec![Flag::Deleted, Flag::Seen], true),
            "PERMANENTFLAGS (\\Deleted \\Seen \\*)",
        ),
        (Code::PermanentFlags(vec![], false), "PERMANENTFLAGS ()"),
        (Code::PermanentFlags(vec![], true), "PERMANENTFLAGS (\\*)"),
        (Code::PrivacyRequired, "PRIVACYREQUIRED"),
        (Code::ReadOnly, "READ-ONLY"),
        (Code::ReadWrite, "READ-WRITE"),
        (Code::ServerBug, "SERVERBUG"),
        (Code::TooBig, "TOOBIG"),
        (Code::TryCreate, "TRYCREATE"),
        (Code::UidNext(4392), "UIDNEXT 4392"),
        (Code::UidNotSticky, "UIDNOTSTICKY"),
        (Code::UidValidity(3857529045), "UIDVALIDITY 3857529045"),
        (Code::Unavailable, "UNAVAILABLE"),
        (Code::UnknownCte, "UNKNOWN-CTE"),
        (Code::UseAttr, "USEATTR"),
        (Code::Other("X-FOO".into(), None), "X-FOO"),
        (
            Code::Other("X-FOO".into(), Some("a]b\r\n".into())),
            "X-FOO a b  ",
        ),
    ];
    for (code, want) in cases {
        assert_eq!(
            enc(Response::tagged("t", Status::Ok, Some(code), "done")),
            format!("t OK [{want}] done\r\n")
        );
    }
}

#[test]
fn mailbox_state() {
    assert_eq!(
        untagged(Data::Capability(vec![
            "IMAP4rev2".into(),
            "STARTTLS".into(),
            "AUTH=GSSAPI".into(),
            "LOGINDISABLED".into()
        ])),
        "* CAPABILITY IMAP4rev2 STARTTLS AUTH=GSSAPI LOGINDISABLED\r\n"
    );
    assert_eq!(
        untagged(Data::Enabled(vec!["CONDSTORE".into()])),
        "* ENABLED CONDSTORE\r\n"
    );
    assert_eq!(untagged(Data::Enabled(vec![])), "* ENABLED\r\n");
    assert_eq!(
        untagged(Data::Flags(vec![
            Flag::Answered,
            Flag::Flagged,
            Flag::Deleted,
            Flag::Seen,
            Flag::Draft,
            Flag::Keyword("$Forwarded".into())
        ])),
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded)\r\n"
    );
    assert_eq!(untagged(Data::Exists(172)), "* 172 EXISTS\r\n");
    assert_eq!(untagged(Data::Recent(1)), "* 1 RECENT\r\n");
    assert_eq!(untagged(Data::Expunge(44)), "* 44 EXPUNGE\r\n");
    assert_eq!(
        untagged(Data::Vanished {
            earlier: true,
            uids: set(&[(300, 310), (405, 405), (411, 411)])
        }),
        "* VANISHED (EARLIER) 300:310,405,411\r\n"
    );
    assert_eq!(
        untagged(Data::Vanished {
            earlier: false,
            uids: set(&[(405, 407)])
        }),
        "* VANISHED 405:407\r\n"
    );
    assert_eq!(
        untagged(Data::Status {
            mailbox: Mailbox::new("blurdybloop"),
            items: vec![
                (StatusItem::Messages, 231.into()),
                (StatusItem::UidNext, 44292.into())
            ]
        }),
        "* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)\r\n"
    );
    assert_eq!(
        untagged(Data::Status {
            mailbox: Mailbox::new("Entwürfe"),
            items: vec![
                (StatusItem::HighestModSeq, 7011231777.into()),
                (StatusItem::AppendLimit, StatusValue::Nil),
                (
                    StatusItem::MailboxId,
                    StatusValue::ObjectId("F2212ea87".into())
                )
            ]
        }),
        "* STATUS Entw&APw-rfe (HIGHESTMODSEQ 7011231777 APPENDLIMIT NIL MAILBOXID (F2212ea87))\r\n"
    );
}

#[test]
fn list_and_lsub() {
    let l = |attrs: &[&str], name: &str| ListData {
        attributes: attrs.iter().map(|s| s.to_string()).collect(),
        delimiter: Some('/'),
        mailbox: Mailbox::new(name),
        child_info: vec![],
        old_name: None,
    };
    assert_eq!(
        untagged(Data::List(l(&["Noselect"], "~/Mail/foo"))),
        "* LIST (\\Noselect) \"/\" ~/Mail/foo\r\n"
    );
    assert_eq!(untagged(Data::List(l(&[], ""))), "* LIST () \"/\" \"\"\r\n");
    assert_eq!(
        untagged(Data::List(l(&["HasNoChildren", "Sent"], "Sent Items"))),
        "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n"
    );
    assert_eq!(
        untagged(Data::List(ListData {
            delimiter: None,
            ..l(&["Noselect"], "")
        })),
        "* LIST (\\Noselect) NIL \"\"\r\n"
    );
    // RFC 5258 §5 example 8.
    assert_eq!(
        untagged(Data::List(ListData {
            child_info: vec!["SUBSCRIBED".into()],
            ..l(&[], "Foo")
        })),
        "* LIST () \"/\" Foo (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"
    );
    assert_eq!(
        untagged(Data::List(ListData {
            old_name: Some(Mailbox::new("Old Name")),
            ..l(&[], "New")
        })),
        "* LIST () \"/\" New (\"OLDNAME\" (\"Old Name\"))\r\n"
    );
    // Names: modified UTF-7 without UTF-8 enabled, UTF-8 with; INBOX as such; NIL quoted.
    assert_eq!(
        untagged(Data::Lsub(l(&[], "台北"))),
        "* LSUB () \"/\" &U,BTFw-\r\n"
    );
    assert_eq!(
        enc_utf8(Response::Untagged(Data::List(l(&[], "台北")))),
        "* LIST () \"/\" \"台北\"\r\n"
    );
    assert_eq!(
        untagged(Data::List(l(&[], "inbox"))),
        "* LIST () \"/\" INBOX\r\n"
    );
    assert_eq!(
        untagged(Data::List(l(&[], "nil"))),
        "* LIST () \"/\" \"nil\"\r\n"
    );
    assert_eq!(
        untagged(Data::List(l(&[], "a\"b\\c"))),
        "* LIST () \"/\" \"a\\\"b\\\\c\"\r\n"
    );
    assert_eq!(
        untagged(Data::List(l(&[], "new\nline"))),
        "* LIST () \"/\" new&AAo-line\r\n"
    );
    assert_eq!(
        enc_utf8(Response::Untagged(Data::List(l(&[], "new\nline")))),
        "* LIST () \"/\" {8}\r\nnew\nline\r\n"
    );
    assert_eq!(
        untagged(Data::List(ListData {
            delimiter: Some('\\'),
            ..l(&[], "x")
        })),
        "* LIST () \"\\\\\" x\r\n"
    );
}

#[test]
fn searches_sorts_threads() {
    assert_eq!(
        untagged(Data::Search {
            ids: vec![2, 84, 882],
            mod_seq: None
        }),
        "* SEARCH 2 84 882\r\n"
    );
    assert_eq!(
        untagged(Data::Search {
            ids: vec![],
            mod_seq: None
        }),
        "* SEARCH\r\n"
    );
    assert_eq!(
        untagged(Data::Search {
            ids: vec![2, 5, 6, 7, 11, 12, 18, 19, 20, 23],
            mod_seq: Some(917162500)
        }),
        "* SEARCH 2 5 6 7 11 12 18 19 20 23 (MODSEQ 917162500)\r\n"
    );
    assert_eq!(
        untagged(Data::Sort {
            ids: vec![5, 3, 4, 1, 2],
            mod_seq: None
        }),
        "* SORT 5 3 4 1 2\r\n"
    );
    // RFC 4731 examples.
    assert_eq!(
        untagged(Data::Esearch {
            tag: Some("A282".into()),
            uid: false,
            items: vec![EsearchData::Min(2), EsearchData::Count(3)]
        }),
        "* ESEARCH (TAG \"A282\") MIN 2 COUNT 3\r\n"
    );
    assert_eq!(
        untagged(Data::Esearch {
            tag: Some("A283".into()),
            uid: true,
            items: vec![
                EsearchData::All(set(&[(2, 2), (10, 11)])),
                EsearchData::ModSeq(9)
            ]
        }),
        "* ESEARCH (TAG \"A283\") UID ALL 2,10:11 MODSEQ 9\r\n"
    );
    assert_eq!(
        untagged(Data::Esearch {
            tag: Some("A284".into()),
            uid: false,
            items: vec![]
        }),
        "* ESEARCH (TAG \"A284\")\r\n"
    );
    // RFC 5256 §4: (2)(3 6 (4 23)(44 7 96)).
    let t = |ids: &[u32], children: Vec<Thread>| Thread {
        ids: ids.to_vec(),
        children,
    };
    assert_eq!(
        untagged(Data::Thread(
            vec![
                t(&[2], vec![]),
                t(&[3, 6], vec![t(&[4, 23], vec![]), t(&[44, 7, 96], vec![])]),
            ]
            .into()
        )),
        "* THREAD (2)(3 6 (4 23)(44 7 96))\r\n"
    );
    assert_eq!(
        untagged(Data::Thread(
            vec![t(&[], vec![t(&[3], vec![]), t(&[5], vec![])])].into()
        )),
        "* THREAD ((3)(5))\r\n"
    );
    assert_eq!(untagged(Data::Thread(Vec::new().into())), "* THREAD\r\n");
}

#[test]
fn namespace_id_quota() {
    let ns = |p: &str| NamespaceDesc {
        prefix: p.into(),
        delimiter: Some('/'),
    };
    assert_eq!(
        untagged(Data::Namespace {
            personal: vec![ns("")],
            other: vec![ns("~")],
            shared: vec![]
        }),
        "* NAMESPACE ((\"\" \"/\")) ((\"~\" \"/\")) NIL\r\n"
    );
    assert_eq!(
        untagged(Data::Id(Some(vec![
            ("name".into(), Some("Cyrus".into())),
            ("support-url".into(), None)
        ]))),
        "* ID (\"name\" \"Cyrus\" \"support-url\" NIL)\r\n"
    );
    assert_eq!(untagged(Data::Id(None)), "* ID NIL\r\n");
    assert_eq!(untagged(Data::Id(Some(vec![]))), "* ID NIL\r\n");
    assert_eq!(
        untagged(Data::Quota {
            root: "".into(),
            resources: vec![("STORAGE".into(), 10, 512)]
        }),
        "* QUOTA \"\" (STORAGE 10 512)\r\n"
    );
    assert_eq!(
        untagged(Data::QuotaRoot {
            mailbox: Mailbox::Inbox,
            roots: vec!["".into()]
        }),
        "* QUOTAROOT INBOX \"\"\r\n"
    );
    assert_eq!(
        untagged(Data::QuotaRoot {
            mailbox: Mailbox::new("comp.mail.mime"),
            roots: vec![]
        }),
        "* QUOTAROOT comp.mail.mime\r\n"
    );
}

fn dt() -> DateTime {
    DateTime {
        date: Date {
            year: 1996,
            month: 7,
            day: 17,
        },
        hour: 2,
        minute: 44,
        second: 25,
        zone: -420,
    }
}

#[test]
fn fetch_simple_items() {
    assert_eq!(
        untagged(Data::Fetch {
            seq: 12,
            items: vec![
                FetchData::Flags(vec![Flag::Seen]),
                FetchData::InternalDate(dt()),
                FetchData::Rfc822Size(4286),
                FetchData::Uid(4827313),
                FetchData::ModSeq(624140003),
            ]
        }),
        "* 12 FETCH (FLAGS (\\Seen) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE 4286 UID 4827313 MODSEQ (624140003))\r\n"
    );
    assert_eq!(
        untagged(Data::Fetch {
            seq: 1,
            items: vec![
                FetchData::EmailId("M6d99ac3275bb4e".into()),
                FetchData::ThreadId(None),
                FetchData::ThreadId(Some("T64b478a75b7ea9".into())),
                FetchData::SaveDate(None),
                FetchData::SaveDate(Some(DateTime { zone: 90, ..dt() })),
                FetchData::Preview(Some("Hi \"there\"".into())),
                FetchData::Preview(None),
                FetchData::BinarySize {
                    part: vec![1, 2],
                    size: 2000
                },
            ]
        }),
        "* 1 FETCH (EMAILID (M6d99ac3275bb4e) THREADID NIL THREADID (T64b478a75b7ea9) SAVEDATE NIL SAVEDATE \"17-Jul-1996 02:44:25 +0130\" PREVIEW \"Hi \\\"there\\\"\" PREVIEW NIL BINARY.SIZE[1.2] 2000)\r\n"
    );
}

#[test]
fn fetch_data_goes_as_literals() {
    let sec = |part: Vec<u32>, text: Option<SectionText>| Section { part, text };
    assert_eq!(
        untagged(Data::Fetch {
            seq: 12,
            items: vec![FetchData::BodySection {
                section: sec(vec![], Some(SectionText::Header)),
                origin: None,
                data: Some(b"Date: x\r\n\r\n".to_vec())
            }]
        }),
        "* 12 FETCH (BODY[HEADER] {11}\r\nDate: x\r\n\r\n)\r\n"
    );
    assert_eq!(
        untagged(Data::Fetch {
            seq: 2,
            items: vec![
                FetchData::BodySection {
                    section: sec(
                        vec![1, 2],
                        Some(SectionText::HeaderFields(vec![
                            "DATE".into(),
                            "FROM".into()
                        ]))
                    ),
                    origin: Some(0),
                    data: None
                },
                FetchData::BodySection {
                    section: sec(vec![3], Some(SectionText::Mime)),
                    origin: None,
                    data: Some(b"".to_vec())
                },
                FetchData::BodySection {
                    section: sec(
                        vec![],
                        Some(SectionText::HeaderFieldsNot(vec!["X A".into()]))
                    ),
                    origin: None,
                    data: None
                },
            ]
        }),
        "* 2 FETCH (BODY[1.2.HEADER.FIELDS (DATE FROM)]<0> NIL BODY[3.MIME] {0}\r\n BODY[HEADER.FIELDS.NOT (\"X A\")] NIL)\r\n"
    );
    assert_eq!(
        untagged(Data::Fetch {
            seq: 3,
            items: vec![
                FetchData::Binary {
                    part: vec![1],
                    origin: None,
                    data: Some(b"a\0b".to_vec())
                },
                FetchData::Binary {
                    part: vec![],
                    origin: Some(5),
                    data: Some(b"ab".to_vec())
                },
                FetchData::Rfc822(Some(b"x".to_vec())),
                FetchData::Rfc822Header(None),
                FetchData::Rfc822Text(Some(b"y".to_vec())),
            ]
        }),
        "* 3 FETCH (BINARY[1] ~{3}\r\na\0b BINARY[]<5> {2}\r\nab RFC822 {1}\r\nx RFC822.HEADER NIL RFC822.TEXT {1}\r\ny)\r\n"
    );
}

#[test]
fn envelope_strings_are_quoted_or_literal() {
    let addr = |name: Option<&[u8]>, mailbox: &[u8], host: &[u8]| Address {
        name: name.map(<[u8]>::to_vec),
        adl: None,
        mailbox: Some(mailbox.to_vec()),
        host: Some(host.to_vec()),
    };
    let e = Envelope {
        date: Some(b"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)".to_vec()),
        subject: Some(b"IMAP4rev2 WG mtg summary and minutes".to_vec()),
        from: vec![addr(Some(b"Terry Gray"), b"gray", b"cac.washington.edu")],
        sender: vec![addr(Some(b"Terry Gray"), b"gray", b"cac.washington.edu")],
        reply_to: vec![addr(Some(b"Terry Gray"), b"gray", b"cac.washington.edu")],
        to: vec![addr(None, b"imap", b"cac.washington.edu")],
        cc: vec![
            addr(None, b"minutes", b"CNRI.Reston.VA.US"),
            addr(Some(b"John Klensin"), b"KLENSIN", b"MIT.EDU"),
        ],
        bcc: vec![],
        in_reply_to: None,
        message_id: Some(b"<B27397-0100000@cac.washington.edu>".to_vec()),
    };
    // RFC 9051 §7.5.2's example.
    assert_eq!(
        untagged(Data::Fetch {
            seq: 12,
            items: vec![FetchData::Envelope(Box::new(e.clone()))]
        }),
        "* 12 FETCH (ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \"IMAP4rev2 WG mtg summary and minutes\" ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((NIL NIL \"imap\" \"cac.washington.edu\")) ((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) NIL NIL \"<B27397-0100000@cac.washington.edu>\"))\r\n"
    );
    // A subject with CR/LF, 8-bit bytes or NUL goes as a literal; quotes and backslashes are
    // escaped; 8-bit UTF-8 is quoted once UTF-8 is enabled.
    let with_subject = |s: &[u8], utf8: bool| {
        let r = Response::Untagged(Data::Fetch {
            seq: 1,
            items: vec![FetchData::Envelope(Box::new(Envelope {
                subject: Some(s.to_vec()),
                ..Envelope::default()
            }))],
        });
        let mut out = Vec::new();
        r.encode(&mut out, EncodeOptions { utf8 });
        out
    };
    let tail = b" NIL NIL NIL NIL NIL NIL NIL NIL))\r\n";
    assert_eq!(
        with_subject(b"a\r\nb", false),
        [b"* 1 FETCH (ENVELOPE (NIL {4}\r\na\r\nb".as_slice(), tail].concat()
    );
    assert_eq!(
        with_subject(b"say \"hi\\\"", false),
        [
            b"* 1 FETCH (ENVELOPE (NIL \"say \\\"hi\\\\\\\"\"".as_slice(),
            tail
        ]
        .concat()
    );
    assert_eq!(
        with_subject("für".as_bytes(), false),
        [
            b"* 1 FETCH (ENVELOPE (NIL {4}\r\nf\xc3\xbcr".as_slice(),
            tail
        ]
        .concat()
    );
    assert_eq!(
        with_subject("für".as_bytes(), true),
        [b"* 1 FETCH (ENVELOPE (NIL \"f\xc3\xbcr\"".as_slice(), tail].concat()
    );
    assert_eq!(
        with_subject(b"f\xfcr", true),
        [b"* 1 FETCH (ENVELOPE (NIL {3}\r\nf\xfcr".as_slice(), tail].concat()
    );
    assert_eq!(
        with_subject(b"a\0b", false),
        [b"* 1 FETCH (ENVELOPE (NIL ~{3}\r\na\0b".as_slice(), tail].concat()
    );
    let long = vec![b'x'; 2000];
    assert!(with_subject(&long, false).starts_with(b"* 1 FETCH (ENVELOPE (NIL {2000}\r\n"));
}

#[test]
fn body_structure() {
    let text = BodyStructure::Single {
        media_type: "TEXT".into(),
        subtype: "PLAIN".into(),
        params: vec![("CHARSET".into(), "US-ASCII".into())],
        id: None,
        description: None,
        encoding: "7BIT".into(),
        size: 3028,
        kind: SingleKind::Text { lines: 92 },
        ext: Some(SingleExt::default()),
    };
    assert_eq!(
        untagged(Data::Fetch {
            seq: 1,
            items: vec![FetchData::BodyStructure {
                extended: false,
                body: Box::new(text.clone())
            }]
        }),
        "* 1 FETCH (BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3028 92))\r\n"
    );
    let multi = BodyStructure::Multi {
        parts: vec![
            text.clone(),
            BodyStructure::Single {
                media_type: "APPLICATION".into(),
                subtype: "PDF".into(),
                params: vec![],
                id: Some("<x@y>".into()),
                description: None,
                encoding: "BASE64".into(),
                size: 100,
                kind: SingleKind::Basic,
                ext: Some(SingleExt {
                    md5: None,
                    disposition: Some((
                        "attachment".into(),
                        vec![("filename".into(), "a.pdf".into())],
                    )),
                    language: vec!["en".into()],
                    location: None,
                }),
            },
        ],
        subtype: "MIXED".into(),
        ext: Some(MultiExt {
            params: vec![("BOUNDARY".into(), "xx".into())],
            ..MultiExt::default()
        }),
    };
    assert_eq!(
        untagged(Data::Fetch {
            seq: 2,
            items: vec![FetchData::BodyStructure {
                extended: true,
                body: Box::new(multi)
            }]
        }),
        "* 2 FETCH (BODYSTRUCTURE ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3028 92 NIL NIL NIL NIL)(\"APPLICATION\" \"PDF\" NIL \"<x@y>\" NIL \"BASE64\" 100 NIL (\"attachment\" (\"filename\" \"a.pdf\")) \"en\" NIL) \"MIXED\" (\"BOUNDARY\" \"xx\") NIL NIL NIL))\r\n"
    );
    let message = BodyStructure::Single {
        media_type: "MESSAGE".into(),
        subtype: "RFC822".into(),
        params: vec![],
        id: None,
        description: None,
        encoding: "7BIT".into(),
        size: 500,
        kind: SingleKind::Message {
            envelope: Box::default(),
            body: Box::new(text),
            lines: 20,
        },
        ext: None,
    };
    assert_eq!(
        untagged(Data::Fetch {
            seq: 3,
            items: vec![FetchData::BodyStructure {
                extended: true,
                body: Box::new(message)
            }]
        }),
        "* 3 FETCH (BODYSTRUCTURE (\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 500 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3028 92 NIL NIL NIL NIL) 20))\r\n"
    );
}

/// What the encoder writes for mailbox names, the decoder reads back as the same name.
#[test]
fn mailbox_names_round_trip() {
    for name in [
        "INBOX",
        "Sent Items",
        "台北/日本語",
        "a&b",
        "\"q\"",
        "x\\y",
        "nil",
        "",
        "a]b",
        "%*",
    ] {
        for utf8 in [false, true] {
            let mut wire = Vec::new();
            Response::Untagged(Data::Status {
                mailbox: Mailbox::new(name),
                items: vec![],
            })
            .encode(&mut wire, EncodeOptions { utf8 });
            let arg = &wire[b"* STATUS ".len()..wire.len() - b" ()\r\n".len()];
            let cmd = [b"a SELECT ".as_slice(), arg, b"\r\n"].concat();
            let opts = Options {
                utf8,
                ..Options::default()
            };
            let Ok(Decoded::Command(c, _)) = decode_command(&cmd, &opts) else {
                panic!("{name:?} {utf8}: {:?}", String::from_utf8_lossy(&cmd))
            };
            assert_eq!(
                c.command,
                Command::Select {
                    mailbox: Mailbox::new(name),
                    params: SelectParams::default()
                },
                "{name:?} {utf8}"
            );
        }
    }
}
