//! Property tests: `Metadata::parse` never panics, every offset lies within the input and in
//! order (children inside their parent's body, siblings one after another), the IMAP printers
//! accept whatever comes out, and the stored form reads back to the same value.

use mailfleet_message::{BodyPart, Metadata, PartKind};
use proptest::prelude::*;

fn check_part(p: &BodyPart, lo: u64, hi: u64, len: u64) {
    let o = p.offsets;
    assert!(lo <= o.header_start, "{o:?} starts before {lo}");
    assert!(o.header_start <= o.body_start, "{o:?}");
    assert!(o.body_start <= o.body_end, "{o:?}");
    assert!(o.body_end <= hi && hi <= len, "{o:?} ends after {hi}");
    match &p.kind {
        PartKind::Multipart { parts } => {
            assert!(!parts.is_empty());
            let mut at = o.body_start;
            for c in parts {
                check_part(c, at, o.body_end, len);
                at = c.offsets.body_end;
            }
        }
        PartKind::Message { body, .. } => {
            assert_eq!(body.offsets.header_start, o.body_start);
            assert_eq!(body.offsets.body_end, o.body_end);
            check_part(body, o.body_start, o.body_end, len);
        }
        PartKind::Basic | PartKind::Text { .. } => {}
    }
}

fn check(raw: &[u8]) {
    let m = Metadata::parse(raw);
    let len = raw.len() as u64;
    assert_eq!(m.size, len);
    assert_eq!(m.body.offsets.header_start, 0);
    assert_eq!(m.body.offsets.body_end, len);
    check_part(&m.body, 0, len, len);
    assert!(m.preview.chars().count() <= 256);
    let _ = m.envelope.to_imap();
    let _ = m.body.to_imap_body();
    let bs = m.body.to_imap_bodystructure();
    assert!(bs.starts_with('(') && bs.ends_with(')'));
    let stored = m.to_stored();
    assert_eq!(
        Metadata::from_stored(&stored).expect("stored form reads back"),
        m
    );
}

const SAMPLES: &[&[u8]] = &[
    b"From: \"A\" <a@x.test>\r\nTo: g: b@x.test, c@y.test;\r\nSubject: =?UTF-8?Q?h=C3=A9?= Re: x\r\nDate: Mon, 2 Jan 2006 15:04:05 -0700\r\nMessage-ID: <1@x>\r\nReferences: <0@x>\r\n\r\nHello\r\nworld\r\n",
    b"Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\npre\r\n--m\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\n\r\nplain\r\n--a\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>h=C3=A9</p>\r\n--a--\r\n--m\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename*=UTF-8''f%C3%A9.eml\r\n\r\nFrom: b@y\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n--i\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0K\r\n--i--\r\n--m--\r\n",
    b"Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: a\n\nx\n--d\n\nSubject: b\n\ny\n--d--\n",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes(raw in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check(&raw);
    }

    #[test]
    fn random_mime_like_text(raw in "([A-Za-z-]{1,12}: [ -~]{0,40}\r?\n){0,6}\r?\n((--[ab]{1,2}(--)?|[ -~]{0,30}|Content-Type: (multipart/mixed|message/rfc822|text/plain); boundary=[ab]{1,2})\r?\n){0,30}") {
        check(raw.as_bytes());
    }

    #[test]
    fn mutated_samples(
        sample in 0..SAMPLES.len(),
        edits in proptest::collection::vec((any::<u16>(), 0u8..3, any::<u8>()), 1..12),
    ) {
        let mut raw = SAMPLES[sample].to_vec();
        for (at, op, byte) in edits {
            let at = if raw.is_empty() { 0 } else { at as usize % (raw.len() + 1) };
            match op {
                0 => raw.insert(at, byte),
                1 if at < raw.len() => { raw.remove(at); }
                _ if at < raw.len() => raw[at] = byte,
                _ => raw.push(byte),
            }
        }
        check(&raw);
    }

    #[test]
    fn truncated_samples(sample in 0..SAMPLES.len(), cut in any::<u16>()) {
        let raw = SAMPLES[sample];
        check(&raw[..cut as usize % (raw.len() + 1)]);
    }
}

#[test]
fn samples_hold() {
    for s in SAMPLES {
        check(s);
    }
}

#[test]
fn deep_and_wide_inputs() {
    // Deep nesting with the same boundary at every level, and a flood of parts.
    let mut raw = Vec::new();
    for _ in 0..500 {
        raw.extend_from_slice(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n");
    }
    check(&raw);
    let mut raw = Vec::new();
    for _ in 0..300 {
        raw.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
    }
    check(&raw);
    let mut raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
    for _ in 0..5000 {
        raw.extend_from_slice(b"--b\r\n");
    }
    check(&raw);
    check(&vec![b'\n'; 10000]);
    check(&vec![b'('; 10000]);
    let mut big_header = b"To: ".to_vec();
    big_header.extend(std::iter::repeat_n(b"a@b, ".as_slice(), 100_000).flatten());
    check(&big_header);
}

/// Inputs built to make a careless parser quadratic: each one takes one pass, so even an
/// unoptimised build finishes in well under the bound.
#[test]
fn adversarial_headers_take_linear_time() {
    let started = std::time::Instant::now();
    let mut raw = b"Subject: ".to_vec();
    raw.extend(std::iter::repeat_n(b"Re: [x] ".as_slice(), 30_000).flatten());
    raw.extend_from_slice(b"end\r\nTo: a@b");
    raw.extend(std::iter::repeat_n(b':', 200_000));
    raw.extend_from_slice(b"\r\nCc: ");
    raw.extend(std::iter::repeat_n(b"<".as_slice(), 100_000).flatten());
    raw.extend_from_slice(b"\r\nReferences: ");
    raw.extend(std::iter::repeat_n(b"<a@b> ".as_slice(), 40_000).flatten());
    raw.extend_from_slice(b"\r\n\r\nbody\r\n");
    let m = Metadata::parse(&raw);
    assert_eq!(m.search.base_subject, "end");
    check(&raw);
    let elapsed = started.elapsed();
    assert!(elapsed < std::time::Duration::from_secs(20), "{elapsed:?}");
}

fn check_index(raw: &[u8]) {
    let m = Metadata::parse(raw);
    let t = mailfleet_message::index_text(raw, &m);
    assert!(t.len() <= mailfleet_message::MAX_INDEX_TEXT);
    assert!(!t.contains('\0'));
    if let Some(w) = mailfleet_message::index_text_whole(raw, &m) {
        assert_eq!(w, t);
    }
    // Metadata of other bytes: still no panic.
    let _ = mailfleet_message::index_text(&raw[..raw.len() / 2], &m);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn index_text_random_bytes(raw in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check_index(&raw);
    }

    #[test]
    fn index_text_mime_like(raw in "([A-Za-z-]{1,12}: ([ -~]|=\\?[a-z0-9-]{1,8}\\?[bqBQ]\\?[ -~]{0,10}\\?=){0,8}\r?\n){0,6}\r?\n((--[ab]{1,2}(--)?|[ -~]{0,30}|Content-Transfer-Encoding: (base64|quoted-printable)|Content-Type: (multipart/mixed|message/rfc822|text/plain|image/png); (boundary=[ab]{1,2}|charset=(utf-16|iso-2022-jp|utf-7|koi8-r|x)))\r?\n){0,30}") {
        check_index(raw.as_bytes());
    }

    #[test]
    fn index_text_mutated_samples(
        sample in 0..SAMPLES.len(),
        edits in proptest::collection::vec((any::<u16>(), 0u8..3, any::<u8>()), 1..12),
    ) {
        let mut raw = SAMPLES[sample].to_vec();
        for (at, op, byte) in edits {
            let at = if raw.is_empty() { 0 } else { at as usize % (raw.len() + 1) };
            match op {
                0 => raw.insert(at, byte),
                1 if at < raw.len() => { raw.remove(at); }
                _ if at < raw.len() => raw[at] = byte,
                _ => raw.push(byte),
            }
        }
        check_index(&raw);
    }
}
