//! The decoder's framing: literals (synchronizing, LITERAL+/-, binary), streamed APPEND,
//! limits, and bytes arriving in any pieces.

use mailfleet_imap_proto::*;

fn decoder() -> Decoder {
    Decoder::new(Options::default())
}

#[test]
fn synchronizing_literal_is_announced_once_then_completes() {
    let mut d = decoder();
    let mut buf = b"a1 LOGIN {4}\r\n".to_vec();
    assert_eq!(
        d.decode(&buf),
        Ok(Decoded::LiteralAnnounced {
            tag: "a1".into(),
            offset: 9,
            line_end: 14,
            size: 4,
            binary: false
        })
    );
    // Asked again with nothing new: the session already answered `+`.
    assert_eq!(d.decode(&buf), Ok(Decoded::Incomplete));
    buf.extend_from_slice(b"fr");
    assert_eq!(d.decode(&buf), Ok(Decoded::Incomplete));
    buf.extend_from_slice(b"ed {2}\r\n");
    assert!(matches!(
        d.decode(&buf),
        Ok(Decoded::LiteralAnnounced {
            size: 2,
            line_end: 24,
            ..
        })
    ));
    buf.extend_from_slice(b"pw\r\na2 NOOP\r\n");
    let Ok(Decoded::Command(c, n)) = d.decode(&buf) else {
        panic!()
    };
    assert_eq!(n, 28);
    assert_eq!(
        c,
        TaggedCommand {
            tag: "a1".into(),
            command: Command::Login {
                username: "fred".into(),
                password: Secret(b"pw".to_vec())
            }
        }
    );
    buf.drain(..n);
    assert!(matches!(d.decode(&buf), Ok(Decoded::Command(c, 9)) if c.command == Command::Noop));
}

#[test]
fn literal_where_none_may_stand_is_refused_before_it_is_sent() {
    for s in [
        "a NOOP {3}\r\n",
        "a FROB {3}\r\n",
        "a SELECT INBOX {3}\r\n",
        "a FETCH {3}\r\n",
        "a LOGIN fred pw {3}\r\n",
    ] {
        let e = decoder().decode(s.as_bytes()).unwrap_err();
        assert_eq!(e.tag.as_deref(), Some("a"), "{s:?}");
        assert_eq!((e.consumed, e.discard, e.line_complete), (s.len(), 0, true));
    }
    // The same when the client did not wait for `+`: only the announcing line is consumed.
    let e = decoder().decode(b"a NOOP {3}\r\nabc\r\n").unwrap_err();
    assert_eq!(e.consumed, 12);
    // Where a literal may stand, a zero-length one is fine.
    assert!(matches!(
        decode_command(b"a LOGIN {0}\r\n {0}\r\n\r\n", &Options::default()),
        Ok(Decoded::Command(..))
    ));
}

#[test]
fn non_synchronizing_literals() {
    let mut d = decoder();
    let s = b"a LOGIN {4+}\r\nfred {2+}\r\npw\r\n";
    assert!(matches!(d.decode(&s[..14]), Ok(Decoded::Incomplete)));
    assert!(matches!(d.decode(s), Ok(Decoded::Command(_, n)) if n == s.len()));
    // LITERAL-: over 4096 bytes is a BAD [CLIENTBUG], the literal's bytes to be discarded.
    let e = decoder().decode(b"a LOGIN {4097+}\r\n").unwrap_err();
    assert_eq!(e.kind, ErrorKind::NonSyncTooLarge { limit: 4096 });
    assert_eq!((e.consumed, e.discard), (17, 4097));
    assert_eq!(e.kind.response(), (Status::Bad, Some(Code::ClientBug)));
    // LITERAL+: the caller raises the bound.
    let mut opts = Options::default();
    opts.limits.max_non_sync = opts.limits.max_literal;
    let mut buf = b"a LOGIN {5000+}\r\n".to_vec();
    buf.extend(std::iter::repeat_n(b'x', 5000));
    buf.extend_from_slice(b" pw\r\n");
    assert!(matches!(
        decode_command(&buf, &opts),
        Ok(Decoded::Command(..))
    ));
}

#[test]
fn literal_bomb_is_refused_at_once() {
    for (s, sync) in [
        ("a LOGIN {4294967296}\r\n", true),
        ("a LOGIN {4294967296+}\r\n", false),
        ("a LOGIN {99999999999999999999999999999}\r\n", true),
    ] {
        let e = decoder().decode(s.as_bytes()).unwrap_err();
        assert!(
            matches!(
                e.kind,
                ErrorKind::LiteralTooLarge { limit: 65536, .. } | ErrorKind::NonSyncTooLarge { .. }
            ),
            "{e:?}"
        );
        assert_eq!(e.consumed, s.len());
        assert_eq!(e.discard == 0, sync);
        assert_eq!(e.tag.as_deref(), Some("a"));
    }
    let e = decoder().decode(b"a LOGIN {4294967296}\r\n").unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::LiteralTooLarge {
            size: 4294967296,
            limit: 65536
        }
    );
    assert_eq!(e.kind.response(), (Status::Bad, Some(Code::TooBig)));
    // An APPEND message over APPENDLIMIT: NO [TOOBIG] before the client sends it.
    let e = decoder()
        .decode(b"a APPEND INBOX {4294967296}\r\n")
        .unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::MessageTooLarge {
            size: 4294967296,
            limit: 50 * 1024 * 1024
        }
    );
    assert_eq!(e.kind.response(), (Status::No, Some(Code::TooBig)));
    assert_eq!((e.consumed, e.discard), (29, 0));
}

#[test]
fn streamed_append_and_multiappend() {
    let mut d = decoder();
    let first = b"A003 APPEND saved-messages (\\Seen) \"07-Feb-1994 21:52:25 -0800\" {310}\r\n";
    // Every strict prefix is incomplete.
    for k in 0..first.len() {
        assert_eq!(d.decode(&first[..k]), Ok(Decoded::Incomplete), "{k}");
    }
    let Ok(Decoded::AppendMessage(h, n)) = d.decode(first) else {
        panic!()
    };
    assert_eq!(n, first.len());
    assert_eq!(
        h,
        AppendHeader {
            tag: "A003".into(),
            mailbox: Mailbox::new("saved-messages"),
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
            size: 310,
            binary: false,
            sync: true,
            index: 0
        }
    );
    // The session reads 310 bytes itself; then the next message, non-synchronizing and binary.
    let next = b" (\\Draft) ~{3+}\r\n";
    assert_eq!(d.decode(&next[..5]), Ok(Decoded::Incomplete));
    let Ok(Decoded::AppendMessage(h, n)) = d.decode(next) else {
        panic!()
    };
    assert_eq!(n, next.len());
    assert_eq!((h.index, h.size, h.sync, h.binary), (1, 3, false, true));
    assert_eq!(h.tag, "A003");
    assert_eq!(h.flags, vec![Flag::Draft]);
    assert_eq!(h.mailbox, Mailbox::new("saved-messages"));
    assert_eq!(d.decode(b"\r"), Ok(Decoded::Incomplete));
    assert_eq!(
        d.decode(b"\r\nA004 NOOP\r\n"),
        Ok(Decoded::AppendEnd {
            tag: "A003".into(),
            consumed: 2
        })
    );
    assert!(matches!(
        d.decode(b"A004 NOOP\r\n"),
        Ok(Decoded::Command(..))
    ));
}

#[test]
fn streamed_append_with_a_literal_mailbox_name() {
    let mut d = decoder();
    let mut buf = b"a APPEND {5}\r\n".to_vec();
    assert!(matches!(
        d.decode(&buf),
        Ok(Decoded::LiteralAnnounced { size: 5, .. })
    ));
    buf.extend_from_slice(b"Draft {10}\r\n");
    let Ok(Decoded::AppendMessage(h, n)) = d.decode(&buf) else {
        panic!()
    };
    assert_eq!(
        (h.mailbox, h.size, n),
        (Mailbox::new("Draft"), 10, buf.len())
    );
}

#[test]
fn bad_continuation_of_an_append_carries_its_tag() {
    let mut d = decoder();
    assert!(matches!(
        d.decode(b"t APPEND x {1}\r\n"),
        Ok(Decoded::AppendMessage(..))
    ));
    let e = d.decode(b" junk\r\n").unwrap_err();
    assert_eq!((e.tag.as_deref(), e.consumed), (Some("t"), 7));
    // The decoder is back to reading commands.
    assert!(matches!(d.decode(b"u NOOP\r\n"), Ok(Decoded::Command(..))));
    // A refused message: the session resets.
    assert!(matches!(
        d.decode(b"t APPEND x {1}\r\n"),
        Ok(Decoded::AppendMessage(..))
    ));
    d.reset();
    assert!(matches!(d.decode(b"u NOOP\r\n"), Ok(Decoded::Command(..))));
}

#[test]
fn line_and_command_limits() {
    let mut d = decoder();
    let long = vec![b'a'; 70_000];
    let e = d.decode(&long).unwrap_err();
    assert_eq!(e.kind, ErrorKind::LineTooLong);
    assert_eq!((e.consumed, e.line_complete), (65536, false));
    assert_eq!(e.tag, None);
    assert_eq!(skip_line(b"xx\r\nrest"), (4, true));
    // Just under the limit is fine.
    let mut ok = b"a SEARCH TEXT ".to_vec();
    ok.extend(std::iter::repeat_n(b'x', 65536 - ok.len() - 2));
    ok.extend_from_slice(b"\r\n");
    assert!(matches!(d.decode(&ok), Ok(Decoded::Command(..))));
    // Literals count towards the command's size.
    let opts = Options {
        limits: Limits {
            max_command: 100,
            ..Limits::default()
        },
        ..Options::default()
    };
    let e = decode_command(b"a LOGIN {50+}\r\n", &opts)
        .map(|_| ())
        .err();
    assert_eq!(e, None);
    let e = decode_command(b"a LOGIN {90+}\r\n", &opts).unwrap_err();
    assert_eq!((e.kind, e.discard), (ErrorKind::CommandTooLarge, 90));
    // Too many literals.
    let opts = Options {
        limits: Limits {
            max_literals: 2,
            ..Limits::default()
        },
        ..Options::default()
    };
    assert!(matches!(
        decode_command(b"a LOGIN {1+}\r\nx {1+}\r\ny\r\n", &opts),
        Ok(Decoded::Command(..))
    ));
    let e = decode_command(
        b"a SEARCH TEXT {1+}\r\nx TEXT {1+}\r\ny TEXT {1+}\r\n",
        &opts,
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooManyLiterals);
}

#[test]
fn a_million_open_parentheses() {
    let mut s = b"a SEARCH ".to_vec();
    s.extend(std::iter::repeat_n(b'(', 1_000_000));
    // Within the default line limit: refused as too long, without parsing.
    let e = decoder().decode(&s).unwrap_err();
    assert_eq!(e.kind, ErrorKind::LineTooLong);
    // With lines allowed that long, the nesting bound refuses it without recursing deeper.
    s.extend_from_slice(b"ALL");
    s.extend(std::iter::repeat_n(b')', 1_000_000));
    s.extend_from_slice(b"\r\n");
    let opts = Options {
        limits: Limits {
            max_line: 4 << 20,
            max_command: 4 << 20,
            ..Limits::default()
        },
        ..Options::default()
    };
    for prefix in [
        "a SEARCH ",
        "a FETCH 1 ",
        "a STORE 1 FLAGS ",
        "a LIST ",
        "a SELECT x ",
    ] {
        let mut cmd = prefix.as_bytes().to_vec();
        cmd.extend_from_slice(&s[9..]);
        let e = decode_command(&cmd, &opts).unwrap_err();
        assert!(
            matches!(e.kind, ErrorKind::TooDeep | ErrorKind::Syntax(_)),
            "{prefix}: {:?}",
            e.kind
        );
        assert_eq!(e.consumed, cmd.len());
    }
    let e = decode_command(&s, &opts).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooDeep);
    // And a million NOTs.
    let mut nots = b"a SEARCH ".to_vec();
    nots.extend("NOT ".repeat(1_000_000).bytes());
    nots.extend_from_slice(b"ALL\r\n");
    assert_eq!(
        decode_command(&nots, &opts).unwrap_err().kind,
        ErrorKind::TooDeep
    );
}

#[test]
fn utf8_option_changes_mailbox_decoding() {
    let mut d = decoder();
    assert!(d.decode("a SELECT \"Entwürfe\"\r\n".as_bytes()).is_err());
    d.set_options(Options {
        utf8: true,
        ..d.options().clone()
    });
    let Ok(Decoded::Command(c, _)) = d.decode("a SELECT \"Entwürfe\"\r\n".as_bytes()) else {
        panic!()
    };
    assert!(
        matches!(c.command, Command::Select { mailbox, .. } if mailbox == Mailbox::new("Entwürfe"))
    );
}

/// Runs a session's loop over `chunks`: decoded commands and errors in order (announcements
/// are answered by waiting for more bytes; streamed messages and discarded literals are read
/// off the buffer).
fn session(chunks: &[&[u8]]) -> Vec<String> {
    let mut d = decoder();
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut to_skip = 0u64;
    let mut skipping_line = false;
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            if to_skip > 0 {
                let k = (to_skip as usize).min(buf.len());
                buf.drain(..k);
                to_skip -= k as u64;
                if to_skip > 0 {
                    break;
                }
            }
            if skipping_line {
                let (n, found) = skip_line(&buf);
                buf.drain(..n);
                if !found {
                    break;
                }
                skipping_line = false;
            }
            match d.decode(&buf) {
                Ok(Decoded::Command(c, n)) => {
                    out.push(format!("{c:?}"));
                    buf.drain(..n);
                }
                Ok(Decoded::Incomplete) | Ok(Decoded::LiteralAnnounced { .. }) => break,
                Ok(Decoded::AppendMessage(h, n)) => {
                    out.push(format!("{h:?}"));
                    buf.drain(..n);
                    to_skip = h.size;
                }
                Ok(Decoded::AppendEnd { tag, consumed }) => {
                    out.push(format!("end {tag}"));
                    buf.drain(..consumed);
                }
                Err(e) => {
                    out.push(format!("error {:?} {:?}", e.tag, e.kind));
                    buf.drain(..e.consumed);
                    to_skip = e.discard;
                    skipping_line = !e.line_complete;
                }
            }
        }
    }
    out
}

#[test]
fn byte_by_byte_equals_all_at_once() {
    let input: &[u8] = b"a LOGIN {4}\r\nfred {2+}\r\npw\r\nb APPEND INBOX (\\Seen) {5}\r\nhello {3+}\r\nabc\r\nc FROB\r\nd NOOP {3}\r\ne SEARCH TEXT {4}\r\n1234 UNSEEN\r\nf LOGIN {5000+}\r\n";
    let whole = session(&[input]);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(session(&bytes), whole);
    for size in [2, 3, 7, 13] {
        let chunks: Vec<&[u8]> = input.chunks(size).collect();
        assert_eq!(session(&chunks), whole, "chunks of {size}");
    }
    assert_eq!(whole.len(), 8, "{whole:#?}");
}

/// Found by the property tests: a line ending in digits and `}` without a `{` panicked.
#[test]
fn closing_brace_without_an_opening_one() {
    for s in [
        "a ID 5}\r\n",
        "5}\r\n",
        "}\r\n",
        "a LOGIN ~5}\r\n",
        "a LOGIN {+}\r\n",
    ] {
        let e = decoder().decode(s.as_bytes()).unwrap_err();
        assert_eq!(e.consumed, s.len(), "{s:?}");
    }
}

/// Found by fuzzing: the tag of an over-long line was read from whatever had arrived past the
/// limit, so it depended on how the bytes were split.
#[test]
fn tag_of_an_over_long_line_does_not_depend_on_the_split() {
    let mut input = vec![b'U'; 70_000];
    input.extend_from_slice(b" NOOP\r\nb NOOP\r\n");
    let whole = session(&[&input]);
    assert_eq!(whole[0], "error None LineTooLong");
    assert_eq!(whole.len(), 2);
    let pieces: Vec<&[u8]> = input.chunks(1000).collect();
    assert_eq!(session(&pieces), whole);
}

/// Found by fuzzing: a line past both the line and the command bound gave whichever was
/// checked first with all the bytes there, but the one passed first when they trickled in.
#[test]
fn the_bound_passed_first_is_reported() {
    let opts = Options {
        limits: Limits {
            max_line: 64,
            max_command: 128,
            ..Limits::default()
        },
        ..Options::default()
    };
    // The last line starts at 83: past 128 bytes before it is 64 long.
    let mut input = b"a LOGIN {40+}\r\n".to_vec();
    input.extend(vec![b'u'; 40]);
    input.extend_from_slice(b" {20+}\r\n");
    input.extend(vec![b'p'; 20]);
    input.extend(vec![b'x'; 200]);
    input.extend_from_slice(b"\r\nb NOOP\r\n");
    let run = |chunks: &[&[u8]]| {
        let mut d = Decoder::new(opts.clone());
        let mut buf = Vec::new();
        for c in chunks {
            buf.extend_from_slice(c);
            match d.decode(&buf) {
                Ok(Decoded::Incomplete) => {}
                Err(e) => return e.kind,
                other => panic!("{other:?}"),
            }
        }
        panic!("no error")
    };
    let whole = run(&[&input]);
    assert_eq!(whole, ErrorKind::CommandTooLarge);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run(&bytes), whole);
    // A line starting early passes the line bound first.
    let mut input = b"a LOGIN {3+}\r\nabc".to_vec();
    input.extend(vec![b'x'; 200]);
    assert_eq!(run(&[&input]), ErrorKind::LineTooLong);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run(&bytes), ErrorKind::LineTooLong);
}
