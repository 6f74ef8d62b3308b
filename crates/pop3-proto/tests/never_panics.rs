//! Properties of the parser over arbitrary input: it never panics, never uses more bytes than
//! it was given, agrees with itself whatever the input's split, and what stuffing writes
//! reads back as the original.

use mailfleet_pop3_proto::*;
use proptest::prelude::*;

/// Commands as clients write them, with random arguments.
fn command_line() -> impl Strategy<Value = String> {
    let word = "[A-Za-z0-9@._+-]{1,30}";
    let num = "[1-9][0-9]{0,6}";
    prop_oneof![
        Just("CAPA".to_string()),
        Just("STAT".to_string()),
        Just("QUIT".to_string()),
        word.prop_map(|w| format!("USER {w}")),
        "[ -~]{1,60}".prop_map(|p| format!("PASS {p}")),
        num.prop_map(|n| format!("RETR {n}")),
        num.prop_map(|n| format!("LIST {n}")),
        (num, "[0-9]{1,4}").prop_map(|(n, l)| format!("TOP {n} {l}")),
        "[A-Za-z0-9+/=]{1,200}".prop_map(|i| format!("AUTH PLAIN {i}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic_and_consume_at_most_their_length(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048)
    ) {
        match parse_command(&bytes) {
            Ok(Parsed::Complete(_, n)) => prop_assert!(n > 0 && n <= bytes.len()),
            Ok(Parsed::Incomplete) => {
                prop_assert!(bytes.len() < MAX_COMMAND_LINE);
                prop_assert!(!bytes.contains(&b'\n'));
            }
            Err(e) => {
                prop_assert!(e.consumed > 0 && e.consumed <= bytes.len());
                prop_assert_eq!(e.line_complete, e.kind != CommandErrorKind::LineTooLong);
            }
        }
    }

    #[test]
    fn valid_commands_parse_whole_and_every_prefix_is_incomplete(line in command_line()) {
        let wire = format!("{line}\r\n");
        match parse_command(wire.as_bytes()) {
            Ok(Parsed::Complete(c, n)) => {
                prop_assert_eq!(n, wire.len());
                prop_assert!(line.to_ascii_uppercase().starts_with(c.keyword()));
            }
            other => prop_assert!(false, "{:?} gave {:?}", line, other),
        }
        for cut in 0..wire.len() - 1 {
            prop_assert_eq!(parse_command(&wire.as_bytes()[..cut]), Ok(Parsed::Incomplete));
        }
    }

    #[test]
    fn stuffed_messages_unstuff_to_the_original(
        body in proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), any::<u8>()], 0..600),
        split in 1usize..64,
    ) {
        // A stored message is CRLF text; make it so.
        let text: Vec<u8> = String::from_utf8_lossy(&body)
            .replace('\r', "")
            .replace('\n', "\r\n")
            .into_bytes();
        let mut out = Vec::new();
        let mut s = DotStuffer::default();
        for chunk in text.chunks(split) {
            s.feed(chunk, &mut out);
        }
        s.finish(&mut out);
        // Read it back as a client does: line by line up to the lone dot.
        let wire = String::from_utf8_lossy(&out).into_owned();
        let mut lines: Vec<&str> = wire.split("\r\n").collect();
        prop_assert_eq!(lines.pop(), Some(""));
        prop_assert_eq!(lines.pop(), Some("."));
        let back: Vec<String> = lines
            .iter()
            .map(|l| l.strip_prefix('.').unwrap_or(l).to_string())
            .collect();
        let mut expected = String::from_utf8_lossy(&text).into_owned();
        if !expected.is_empty() && !expected.ends_with("\r\n") {
            expected.push_str("\r\n");
        }
        prop_assert_eq!(back.iter().map(|l| format!("{l}\r\n")).collect::<String>(), expected);
    }
}
