//! Arbitrary input never panics any parser, what a parser accepts is consistent (it consumed no
//! more than it was given, the bytes it consumed parse alone to the same thing, a reply it
//! returns encodes to one that parses back), and pipelined commands parse the same whole or split.
//! The inputs are built so that random cases reach the accepting branches, not only the errors.

use mailfleet_smtp_proto::*;
use proptest::prelude::*;

/// Bytes that look like reply lines often enough to parse: codes (some out of range or not
/// digits), separators (some wrong), text with the odd control byte, CRLF or bare LF, and now
/// and then a line with no end, or random bytes.
fn reply_ish() -> impl Strategy<Value = Vec<u8>> {
    let code = prop_oneof![
        8 => (200u16..600).prop_map(|c| c.to_string().into_bytes()),
        1 => (0u16..1000).prop_map(|c| format!("{c:03}").into_bytes()),
        1 => proptest::collection::vec(any::<u8>(), 0..4),
    ];
    let sep = prop_oneof![
        4 => Just(b" ".to_vec()),
        4 => Just(b"-".to_vec()),
        1 => Just(Vec::new()),
        1 => any::<u8>().prop_map(|b| vec![b]),
    ];
    let status = prop_oneof![
        3 => Just(Vec::new()),
        2 => (2u8..6, 0u16..10, 0u16..10).prop_map(|(c, s, d)| format!("{c}.{s}.{d} ").into_bytes()),
    ];
    let text = proptest::collection::vec(
        prop_oneof![8 => b'a'..=b'z', 2 => Just(b' '), 1 => any::<u8>().prop_filter("no LF", |b| *b != b'\n')],
        0..30,
    );
    let end = prop_oneof![
        8 => Just(b"\r\n".to_vec()),
        2 => Just(b"\n".to_vec()),
        1 => Just(Vec::new()),
    ];
    let line =
        (code, sep, status, text, end).prop_map(|(c, s, st, t, e)| [c, s, st, t, e].concat());
    prop_oneof![
        6 => (proptest::collection::vec(line, 1..6), proptest::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(lines, tail)| [lines.concat(), tail].concat()),
        1 => proptest::collection::vec(any::<u8>(), 0..600),
    ]
}

/// Checks what `parse_reply` made of `bytes`; returns whether it found a reply.
fn check_reply(bytes: &[u8]) -> Result<bool, TestCaseError> {
    let parsed = parse_reply(bytes);
    // Every prefix agrees: incomplete before the reply's end, the same reply from there on;
    // a prefix of input that fails or is incomplete never holds a reply.
    for k in 0..bytes.len() {
        match (&parsed, parse_reply(&bytes[..k])) {
            (Ok(Some((_, n))), Ok(None)) => prop_assert!(k < *n),
            (Ok(Some((r, n))), Ok(Some((r2, n2)))) => {
                prop_assert!(k >= *n);
                prop_assert_eq!((r, *n), (&r2, n2));
            }
            (Ok(Some(_)), Err(e)) => {
                prop_assert!(false, "prefix {k} fails ({e}), the whole parses")
            }
            (Ok(None), got) => prop_assert_eq!(got, Ok(None), "prefix {}", k),
            (Err(_), got) => prop_assert!(!matches!(got, Ok(Some(_))), "prefix {k}: {got:?}"),
        }
    }
    let Ok(Some((r, n))) = parsed else {
        return Ok(false);
    };
    prop_assert!(n > 0 && n <= bytes.len());
    prop_assert!((200..600).contains(&r.code));
    prop_assert!(!r.lines.is_empty() && r.lines.len() <= MAX_REPLY_LINES);
    if let Some(s) = r.status {
        prop_assert_eq!(u16::from(s.class), r.code / 100);
    }
    // What the server side would send for it parses back to a reply with the same code and
    // lines, whose own encoding is a fixed point.
    let wire = r.to_bytes();
    let Ok(Some((again, used))) = parse_reply(&wire) else {
        return Err(TestCaseError::fail(format!("{wire:?} does not parse back")));
    };
    prop_assert_eq!(used, wire.len());
    prop_assert_eq!(again.code, r.code);
    prop_assert_eq!(again.lines.len(), r.lines.len());
    let wire_again = again.to_bytes();
    prop_assert_eq!(
        parse_reply(&wire_again),
        Ok(Some((again.clone(), wire_again.len())))
    );
    Ok(true)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn commands(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut at = 0;
        while at < bytes.len() {
            let left = bytes.len() - at;
            match parse_command(&bytes[at..]) {
                Ok(Parsed::Complete(_, n)) => {
                    prop_assert!(n > 0 && n <= left);
                    // A command ends with its line.
                    prop_assert_eq!(bytes[at + n - 1], b'\n');
                    at += n;
                }
                Ok(Parsed::Incomplete) => {
                    prop_assert!(!bytes[at..].contains(&b'\n'));
                    break;
                }
                Err(e) => {
                    prop_assert!(e.consumed > 0 && e.consumed <= left);
                    at += e.consumed;
                }
            }
        }
    }

    /// One command line each: never incomplete, and whatever the verdict, exactly the line is
    /// consumed.
    #[test]
    fn command_like_text(s in "(MAIL FROM|RCPT TO|EHLO|BDAT|AUTH)[ :<>@\".a-z0-9=,;+\\[\\]-]{0,80}\r\n") {
        match parse_command(s.as_bytes()) {
            Ok(Parsed::Complete(c, n)) => {
                prop_assert_eq!(n, s.len());
                prop_assert!(s.to_ascii_uppercase().starts_with(c.verb()), "{} from {:?}", c.verb(), s);
            }
            Ok(Parsed::Incomplete) => prop_assert!(false, "a whole line is incomplete: {:?}", s),
            Err(e) => {
                prop_assert_eq!(e.consumed, s.len());
                prop_assert!(e.line_complete);
            }
        }
    }

    #[test]
    fn replies(bytes in reply_ish()) {
        check_reply(&bytes)?;
    }

    /// Well-formed reply lines, the codes of a reply's lines not always equal: the parser's
    /// verdict is known in advance.
    #[test]
    fn reply_like_text(s in "([2-5][0-9][0-9][ -]([245]\\.[0-9]\\.[0-9] )?[a-z ]{0,20}\r\n){1,4}") {
        let found = check_reply(s.as_bytes())?;
        let lines: Vec<&str> = s.split_inclusive("\r\n").collect();
        let first = &lines[0][..3];
        let last = lines.iter().position(|l| l.as_bytes()[3] == b' ');
        let mismatch = lines[..=last.unwrap_or(lines.len() - 1)]
            .iter()
            .position(|l| &l[..3] != first);
        let got = parse_reply(s.as_bytes());
        match (mismatch, last) {
            (Some(_), _) => prop_assert_eq!(got, Err(ReplyError::CodeMismatch)),
            (None, None) => prop_assert_eq!(got, Ok(None)),
            (None, Some(i)) => {
                prop_assert!(found);
                let (r, n) = got.unwrap().unwrap();
                prop_assert_eq!(n, lines[..=i].iter().map(|l| l.len()).sum::<usize>());
                prop_assert_eq!(r.code.to_string(), first);
                prop_assert_eq!(r.lines.len(), i + 1);
                // An enhanced code of the reply's class on the first line is taken.
                let word = lines[0][4..].split(' ').next().unwrap_or("");
                let status = EnhancedStatus::parse(word)
                    .filter(|st| u16::from(st.class) == r.code / 100);
                prop_assert_eq!(r.status, status);
            }
        }
    }

    #[test]
    fn data_split_anywhere(body in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(b'a')], 0..200), cut in 0usize..200) {
        let mut input = body.clone();
        input.extend_from_slice(b"\r\n.\r\n");
        let mut whole = DataDecoder::new(1 << 20);
        let mut out_whole = Vec::new();
        let p = whole.feed(&input, &mut out_whole);
        prop_assert!(p.done);
        let cut = cut.min(input.len());
        let mut split = DataDecoder::new(1 << 20);
        let mut out_split = Vec::new();
        let p1 = split.feed(&input[..cut], &mut out_split);
        if !p1.done {
            split.feed(&input[cut..], &mut out_split);
        }
        prop_assert_eq!(out_whole, out_split);
        prop_assert_eq!(whole.bare_line_ending(), split.bare_line_ending());
    }

    #[test]
    fn stuffed_messages_come_back(lines in proptest::collection::vec("[.a-z ]{0,10}", 0..10)) {
        let msg: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
        let wire = dot_stuff(msg.as_bytes());
        let mut d = DataDecoder::new(1 << 20);
        let mut out = Vec::new();
        let p = d.feed(&wire, &mut out);
        prop_assert!(p.done);
        prop_assert_eq!(p.consumed, wire.len());
        prop_assert_eq!(out, msg.into_bytes());
        prop_assert!(!d.bare_line_ending());
    }
}

/// The reply strategy is not vacuous: a fixed sample of its cases reaches the accepting branch
/// often (and the rejecting ones too).
#[test]
fn reply_inputs_reach_every_verdict() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = reply_ish();
    let (mut some, mut none, mut err) = (0, 0, 0);
    for _ in 0..1000 {
        let bytes = strategy.new_tree(&mut runner).unwrap().current();
        match parse_reply(&bytes) {
            Ok(Some(_)) => some += 1,
            Ok(None) => none += 1,
            Err(_) => err += 1,
        }
    }
    assert!(
        some >= 200 && none >= 20 && err >= 100,
        "replies {some}, incomplete {none}, errors {err}"
    );
}
