//! Properties of the decoder on generated input: it never panics, never consumes more than it
//! was given and always makes progress; a valid command is incomplete at every strict prefix
//! (no false completes), decodes the same whatever pieces it arrives in, and what it decodes to
//! encodes back to a command that decodes equal. Generated commands are built so that random
//! cases reach the accepting branches (checked), not only the errors.

use mailfleet_imap_proto::*;
use proptest::prelude::*;

/// Valid commands, one of each kind, some with literals.
const CORPUS: &[&[u8]] = &[
    b"a1 CAPABILITY\r\n",
    b"a2 LOGIN {4}\r\nfred {6+}\r\nsecret\r\n",
    b"a3 AUTHENTICATE PLAIN AGZyZWQAdGVzdA==\r\n",
    b"a4 ENABLE IMAP4rev2 CONDSTORE\r\n",
    b"a5 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541 (1:3 5:7)))\r\n",
    b"a6 CREATE \"Sent Items\" (USE (\\Sent))\r\n",
    b"a7 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"%\" \"foo/*\") RETURN (CHILDREN STATUS (MESSAGES SIZE))\r\n",
    b"a8 STATUS ~peter/&U,BTFw- (UIDNEXT MESSAGES HIGHESTMODSEQ)\r\n",
    b"a9 APPEND saved (\\Seen) \"07-Feb-1994 21:52:25 -0800\" {5}\r\nhello ~{3+}\r\na\0b\r\n",
    b"b1 UID SEARCH RETURN (MIN MAX COUNT SAVE) CHARSET UTF-8 OR (SEEN FLAGGED) NOT FROM {5}\r\nSmith UID 1:* $ MODSEQ \"/flags/\\\\draft\" all 5 YOUNGER 60\r\n",
    b"b2 UID FETCH 1:* (FLAGS BODY.PEEK[1.2.HEADER.FIELDS (DATE \"X Y\")]<0.100> BINARY[1] BINARY.SIZE[2] PREVIEW (LAZY) EMAILID) (CHANGEDSINCE 5 VANISHED)\r\n",
    b"b3 UID STORE 7,5,9 (UNCHANGEDSINCE 320162338) -FLAGS.SILENT (\\Seen $Junk)\r\n",
    b"b4 UID MOVE 42:69 {3}\r\nfoo\r\n",
    b"b5 UID SORT RETURN (COUNT ALL) (REVERSE DATE DISPLAYFROM) UTF-8 UNDELETED SINCE 1-Feb-1994\r\n",
    b"b6 THREAD REFERENCES UTF-8 TEXT \"gewp\"\r\n",
    b"b7 ID (\"name\" \"sodr\" \"vendor\" NIL)\r\n",
    b"b8 SETQUOTA \"\" (STORAGE 512)\r\n",
    b"b9 UID EXPUNGE 3000:3002\r\n",
    b"c1 COMPRESS DEFLATE\r\n",
    b"c2 FETCH 1 FULL\r\n",
    b"c3 LSUB \"#news.\" \"comp.mail.*\"\r\n",
    b"c4 RENAME {3+}\r\nold new\r\n",
    b"c5 IDLE\r\n",
];

fn big_limits() -> Options {
    Options {
        limits: Limits {
            max_line: 1 << 20,
            max_literal: 1 << 20,
            max_command: 1 << 22,
            max_literals: 10_000,
            max_non_sync: 1 << 20,
            ..Limits::default()
        },
        stream_append: false,
        ..Options::default()
    }
}

/// A session's loop over `chunks`; checks what every outcome consumed and returns the
/// outcomes.
fn session(opts: &Options, chunks: &[&[u8]]) -> Result<Vec<String>, TestCaseError> {
    let mut d = Decoder::new(opts.clone());
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
            if buf.is_empty() {
                break;
            }
            match d.decode(&buf) {
                Ok(Decoded::Command(c, n)) => {
                    prop_assert!(n > 0 && n <= buf.len());
                    prop_assert!(buf[n - 1] == b'\n');
                    out.push(format!("{c:?}"));
                    buf.drain(..n);
                }
                Ok(Decoded::Incomplete) => break,
                Ok(Decoded::LiteralAnnounced { line_end, .. }) => {
                    prop_assert_eq!(line_end, buf.len());
                    // Asked again, the answer is not repeated.
                    prop_assert_eq!(d.decode(&buf), Ok(Decoded::Incomplete));
                    break;
                }
                Ok(Decoded::AppendMessage(h, n)) => {
                    prop_assert!(n > 0 && n <= buf.len());
                    prop_assert!(h.size <= opts.limits.max_append);
                    out.push(format!("{h:?}"));
                    buf.drain(..n);
                    to_skip = h.size;
                }
                Ok(Decoded::AppendEnd { tag, consumed }) => {
                    prop_assert!(consumed > 0 && consumed <= buf.len());
                    out.push(format!("end {tag}"));
                    buf.drain(..consumed);
                }
                Err(e) => {
                    prop_assert!(e.consumed > 0 && e.consumed <= buf.len(), "{:?}", e);
                    out.push(format!("error {:?} {:?}", e.tag, e.kind));
                    buf.drain(..e.consumed);
                    to_skip = e.discard;
                    skipping_line = !e.line_complete;
                }
            }
        }
    }
    Ok(out)
}

/// An argument in one of the wire's forms: atom, quoted, literal, non-synchronizing literal.
fn form(s: &[u8], how: u8) -> Vec<u8> {
    let atom = !s.is_empty()
        && s.iter().all(|&c| {
            c > 0x20 && c < 0x7f && !matches!(c, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\')
        });
    let quotable = !s.iter().any(|&c| matches!(c, b'\r' | b'\n' | 0));
    match how % 4 {
        0 if atom => s.to_vec(),
        0 | 1 if quotable => {
            let mut q = vec![b'"'];
            for &c in s {
                if c == b'"' || c == b'\\' {
                    q.push(b'\\');
                }
                q.push(c);
            }
            q.push(b'"');
            q
        }
        2 => [format!("{{{}}}\r\n", s.len()).as_bytes(), s].concat(),
        _ => [format!("{{{}+}}\r\n", s.len()).as_bytes(), s].concat(),
    }
}

fn text() -> impl Strategy<Value = String> {
    "[^\\x00]{0,12}"
}

fn name() -> impl Strategy<Value = String> {
    "[^\\x00-\\x1f\\x7f]{0,10}"
}

fn seq_set() -> impl Strategy<Value = String> {
    proptest::collection::vec((1u32..1000, prop::option::of(0u32..1000)), 1..4).prop_map(|v| {
        v.iter()
            .map(|(a, b)| match b {
                None => a.to_string(),
                Some(0) => format!("{a}:*"),
                Some(b) => format!("{a}:{b}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// Commands built from templates whose arguments are random strings and names in random
/// forms.
fn command() -> impl Strategy<Value = Vec<u8>> {
    (
        0u8..14,
        text(),
        text(),
        name(),
        name(),
        seq_set(),
        any::<[u8; 4]>(),
        (0u32..5000, 1u32..5000),
    )
        .prop_map(|(t, s1, s2, m1, m2, set, how, (o, l))| {
            let m1 = form(mutf7::encode(&m1).as_bytes(), how[0]);
            let m2 = form(mutf7::encode(&m2).as_bytes(), how[1]);
            let s1 = form(s1.as_bytes(), how[2]);
            let s2 = form(s2.as_bytes(), how[3]);
            let partial = format!("<{o}.{l}>");
            let parts: Vec<&[u8]> = match t {
                0 => vec![b"LOGIN ", &s1, b" ", &s2],
                1 => vec![b"SELECT ", &m1, b" (CONDSTORE)"],
                2 => vec![b"RENAME ", &m1, b" ", &m2],
                3 => vec![b"LIST ", &m1, b" (", &m2, b" %) RETURN (SPECIAL-USE)"],
                4 => vec![b"STATUS ", &m1, b" (MESSAGES UNSEEN SIZE)"],
                5 => vec![
                    b"SEARCH CHARSET UTF-8 OR SUBJECT ",
                    &s1,
                    b" NOT (FROM ",
                    &s2,
                    b") UID ",
                    set.as_bytes(),
                ],
                6 => vec![
                    b"UID FETCH ",
                    set.as_bytes(),
                    b" (FLAGS BODY.PEEK[HEADER.FIELDS (",
                    &s1,
                    b")]",
                    partial.as_bytes(),
                    b")",
                ],
                7 => vec![b"STORE ", set.as_bytes(), b" +FLAGS (\\Seen $Kw)"],
                8 => vec![b"UID COPY ", set.as_bytes(), b" ", &m1],
                9 => vec![b"ID (", &s1, b" ", &s2, b")"],
                10 => vec![b"APPEND ", &m1, b" (\\Draft) ", &s1, b" ", &s2],
                11 => vec![
                    b"SORT (REVERSE DATE) UTF-8 TEXT ",
                    &s1,
                    b" HEADER ",
                    &s2,
                    b" x",
                ],
                12 => vec![b"LSUB ", &m1, b" ", &m2],
                _ => vec![b"GETQUOTAROOT ", &m1],
            };
            [b"t1 ".as_slice(), &parts.concat(), b"\r\n"].concat()
        })
}

/// Valid commands: the corpus or generated ones.
fn valid() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => proptest::sample::select(CORPUS).prop_map(<[u8]>::to_vec),
        3 => command(),
    ]
}

/// Checks the properties of a valid command; returns whether it decoded.
fn check_valid(cmd: &[u8]) -> Result<bool, TestCaseError> {
    let opts = big_limits();
    let decoded = match decode_command(cmd, &opts) {
        Ok(Decoded::Command(c, n)) => {
            prop_assert_eq!(n, cmd.len());
            c
        }
        // APPEND arguments that are not a literal, a name that is not modified UTF-7, ...
        Ok(other) => return Err(TestCaseError::fail(format!("{other:?}"))),
        Err(_) => return Ok(false),
    };
    // No false completes: every strict prefix is incomplete.
    for k in 0..cmd.len() {
        prop_assert_eq!(
            decode_command(&cmd[..k], &opts),
            Ok(Decoded::Incomplete),
            "prefix {} of {:?}",
            k,
            String::from_utf8_lossy(cmd)
        );
    }
    // Re-encoded, it decodes equal.
    let wire = decoded.to_bytes();
    match decode_command(&wire, &opts) {
        Ok(Decoded::Command(again, n)) => {
            prop_assert_eq!(n, wire.len());
            prop_assert_eq!(&again, &decoded, "{:?}", String::from_utf8_lossy(&wire));
        }
        other => {
            return Err(TestCaseError::fail(format!(
                "{:?} re-encoded as {:?}: {other:?}",
                decoded,
                String::from_utf8_lossy(&wire)
            )));
        }
    }
    Ok(true)
}

#[test]
fn corpus_commands_are_valid() {
    for cmd in CORPUS {
        assert!(
            check_valid(cmd).unwrap(),
            "{:?}",
            String::from_utf8_lossy(cmd)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400), split in 1usize..50) {
        for stream_append in [true, false] {
            let opts = Options { stream_append, ..Options::default() };
            let whole = session(&opts, &[&bytes])?;
            let pieces: Vec<&[u8]> = bytes.chunks(split).collect();
            prop_assert_eq!(session(&opts, &pieces)?, whole);
        }
    }

    #[test]
    fn valid_commands(cmd in valid()) {
        // Most generated commands are valid (names and strings all have a valid form); the
        // templates are checked to reach the accepting branch in `generated_commands_decode`.
        check_valid(&cmd)?;
    }

    #[test]
    fn pipelined_valid_commands_in_any_pieces(
        cmds in proptest::collection::vec(valid(), 1..5),
        split in 1usize..40,
    ) {
        let input = cmds.concat();
        let opts = Options::default();
        let whole = session(&opts, &[&input])?;
        let pieces: Vec<&[u8]> = input.chunks(split).collect();
        prop_assert_eq!(session(&opts, &pieces)?, whole);
    }

    #[test]
    fn mutated_valid_commands(
        cmd in valid(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 1..6),
        split in 1usize..30,
    ) {
        let mut cmd = cmd;
        for (at, op, byte) in edits {
            let i = at.index(cmd.len() + 1);
            match op {
                0 if i < cmd.len() => cmd[i] = byte,
                1 => cmd.insert(i, byte),
                2 if i < cmd.len() => {
                    cmd.remove(i);
                }
                _ => cmd.truncate(i),
            }
        }
        for stream_append in [true, false] {
            let opts = Options { stream_append, ..Options::default() };
            let whole = session(&opts, &[&cmd])?;
            let pieces: Vec<&[u8]> = cmd.chunks(split).collect();
            prop_assert_eq!(session(&opts, &pieces)?, whole);
            if let Ok(Decoded::Command(c, n)) = decode_command(&cmd, &big_limits()) {
                prop_assert!(n <= cmd.len());
                let wire = c.to_bytes();
                prop_assert_eq!(
                    decode_command(&wire, &big_limits()),
                    Ok(Decoded::Command(c, wire.len()))
                );
            }
        }
    }
}

/// The generated commands reach the accepting branch: most of them decode.
#[test]
fn generated_commands_decode() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = command();
    let mut ok = 0;
    for _ in 0..500 {
        let cmd = strategy.new_tree(&mut runner).unwrap().current();
        if check_valid(&cmd).unwrap() {
            ok += 1;
        }
    }
    assert!(ok > 400, "only {ok} of 500 generated commands decoded");
}
