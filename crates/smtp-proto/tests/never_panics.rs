//! Arbitrary input never panics any parser, and pipelined commands parse the same whole or split.

use mailfleet_smtp_proto::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn commands(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut at = 0;
        while at < bytes.len() {
            match parse_command(&bytes[at..]) {
                Ok(Parsed::Complete(_, n)) => { prop_assert!(n > 0); at += n; }
                Ok(Parsed::Incomplete) => break,
                Err(e) => { prop_assert!(e.consumed > 0); at += e.consumed; }
            }
        }
    }

    #[test]
    fn command_like_text(s in "(MAIL FROM|RCPT TO|EHLO|BDAT|AUTH)[ :<>@\".a-z0-9=,;+\\[\\]-]{0,80}\r\n") {
        let _ = parse_command(s.as_bytes());
    }

    #[test]
    fn replies(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(Some((r, n))) = parse_reply(&bytes) {
            prop_assert!(n <= bytes.len());
            prop_assert!((200..600).contains(&r.code));
        }
    }

    #[test]
    fn reply_like_text(s in "([2-5][0-9][0-9][ -]([245]\\.[0-9]\\.[0-9] )?[a-z ]{0,20}\r\n){1,4}") {
        let _ = parse_reply(s.as_bytes());
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
