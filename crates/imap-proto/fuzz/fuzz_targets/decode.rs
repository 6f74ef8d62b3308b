//! Decodes arbitrary bytes as a session would (whole and in pieces, streaming APPEND or not,
//! UTF-8 or not): no panic, every outcome consumes at most what it was given and makes
//! progress, both splits agree; a decoded command encodes to bytes that decode to it again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailfleet_imap_proto::*;

fn session(opts: &Options, chunks: &[&[u8]]) -> Vec<String> {
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
                    assert!(n > 0 && n <= buf.len() && buf[n - 1] == b'\n');
                    out.push(format!("{c:?}"));
                    buf.drain(..n);
                }
                Ok(Decoded::Incomplete) => break,
                Ok(Decoded::LiteralAnnounced { line_end, .. }) => {
                    assert_eq!(line_end, buf.len());
                    assert_eq!(d.decode(&buf), Ok(Decoded::Incomplete));
                    break;
                }
                Ok(Decoded::AppendMessage(h, n)) => {
                    assert!(n > 0 && n <= buf.len());
                    out.push(format!("{h:?}"));
                    buf.drain(..n);
                    to_skip = h.size;
                }
                Ok(Decoded::AppendEnd { tag, consumed }) => {
                    assert!(consumed > 0 && consumed <= buf.len());
                    out.push(format!("end {tag}"));
                    buf.drain(..consumed);
                }
                Err(e) => {
                    assert!(e.consumed > 0 && e.consumed <= buf.len(), "{e:?}");
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

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let mut opts = Options {
        utf8: mode & 1 != 0,
        stream_append: mode & 2 != 0,
        ..Options::default()
    };
    // Small limits now and then, so that the bounds are reached by short inputs.
    if mode & 4 != 0 {
        opts.limits = Limits {
            max_line: 64,
            max_literal: 16,
            max_append: 32,
            max_command: 128,
            max_depth: 4,
            max_ranges: 4,
            max_literals: 3,
            max_non_sync: 8,
        };
    }
    let split = usize::from(mode >> 3) + 1;
    let whole = session(&opts, &[input]);
    let pieces: Vec<&[u8]> = input.chunks(split).collect();
    assert_eq!(session(&opts, &pieces), whole);

    if let Ok(Decoded::Command(c, n)) = decode_command(input, &opts) {
        assert!(n <= input.len());
        let mut wire = Vec::new();
        c.encode(&mut wire, opts.utf8);
        let mut big = opts.clone();
        big.limits = Limits {
            max_line: 1 << 20,
            max_literal: 1 << 20,
            max_command: 1 << 22,
            max_literals: 1 << 16,
            ..Limits::default()
        };
        match decode_command(&wire, &big) {
            Ok(Decoded::Command(again, m)) => {
                assert_eq!(m, wire.len());
                assert_eq!(again, c, "{:?}", String::from_utf8_lossy(&wire));
            }
            other => panic!("{c:?} encoded as {:?}: {other:?}", String::from_utf8_lossy(&wire)),
        }
    }
});
