//! The base subject of RFC 5256 §2.1, used by SORT SUBJECT and THREAD.
//!
//! The input is the decoded subject (RFC 2047 words already turned into UTF-8). The steps, in
//! the RFC's numbering:
//!
//! 1. tabs and line breaks become spaces, runs of spaces one space;
//! 2. trailing `subj-trailer`s (`(fwd)` or white space) are removed, repeatedly;
//! 3. leading `subj-leader`s (`*subj-blob subj-refwd`, or white space) are removed;
//! 4. a leading `subj-blob` is removed if something is left after it;
//! 5. 3 and 4 are repeated until neither changes the subject;
//! 6. a subject wrapped in `[fwd:` … `]` is unwrapped, and it all starts again at 2.
//!
//! with `subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"` and
//! `subj-blob = "[" *BLOBCHAR "]" *WSP` (BLOBCHAR: anything but `[` and `]`), matched without
//! regard to ASCII case. The subject "is a reply or forward" (THREAD=ORDEREDSUBJECT) when step 2
//! removed `(fwd)`, step 3 removed a `subj-refwd`, or step 6 unwrapped.

/// The base subject and whether the subject was a reply or forward.
pub fn base_subject(subject: &str) -> (String, bool) {
    let collapsed = collapse(subject);
    // Every step only cuts at the ends, so the subject is a slice of the collapsed text (no
    // copying per step: a subject of thousands of "Re: " costs one pass).
    let mut s: &str = &collapsed;
    let mut reply = false;
    loop {
        // (2)
        loop {
            if let Some(rest) = s.strip_suffix(' ') {
                s = rest;
            } else if ends_with_ci(s, "(fwd)") {
                s = &s[..s.len() - 5];
                reply = true;
            } else {
                break;
            }
        }
        // (5): (3) and (4) until nothing changes.
        loop {
            let before = s.len();
            // (3)
            loop {
                if let Some(rest) = s.strip_prefix(' ') {
                    s = rest;
                } else if let Some(n) = leader(s) {
                    s = &s[n..];
                    reply = true;
                } else {
                    break;
                }
            }
            // (4)
            if let Some(n) = blob(s, 0)
                && n < s.len()
            {
                s = &s[n..];
            }
            if s.len() == before {
                break;
            }
        }
        // (6)
        if s.len() >= 6 && starts_with_ci(s, "[fwd:") && s.ends_with(']') {
            s = &s[5..s.len() - 1];
            reply = true;
            continue;
        }
        return (s.to_string(), reply);
    }
}

/// Step 1.
fn collapse(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
            space = true;
        } else {
            if space {
                out.push(' ');
                space = false;
            }
            out.push(c);
        }
    }
    if space {
        out.push(' ');
    }
    out
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn ends_with_ci(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

fn skip_wsp(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    i
}

/// `subj-blob` at byte `i`: the end of the blob and its trailing white space.
fn blob(s: &str, i: usize) -> Option<usize> {
    let b = s.as_bytes();
    if b.get(i) != Some(&b'[') {
        return None;
    }
    let mut j = i + 1;
    while j < b.len() && b[j] != b']' {
        if b[j] == b'[' {
            return None;
        }
        j += 1;
    }
    if j >= b.len() {
        return None;
    }
    Some(skip_wsp(b, j + 1))
}

/// `subj-refwd` at byte `i`: where it ends.
fn refwd(s: &str, i: usize) -> Option<usize> {
    let rest = &s[i..];
    for word in ["re", "fwd", "fw"] {
        if !starts_with_ci(rest, word) {
            continue;
        }
        let j = skip_wsp(s.as_bytes(), i + word.len());
        if let Some(k) = blob(s, j)
            && s.as_bytes().get(k) == Some(&b':')
        {
            return Some(k + 1);
        }
        if s.as_bytes().get(j) == Some(&b':') {
            return Some(j + 1);
        }
    }
    None
}

/// `*subj-blob subj-refwd` at the start: its length.
fn leader(s: &str) -> Option<usize> {
    let mut i = 0;
    while let Some(n) = blob(s, i) {
        i = n;
    }
    refwd(s, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(s: &str) -> &'static str {
        Box::leak(base_subject(s).0.into_boxed_str())
    }

    #[test]
    fn whitespace_folding() {
        assert_eq!(base("  hello   world  "), "hello world");
        assert_eq!(base("hello\t\r\n world"), "hello world");
        assert_eq!(base(""), "");
        assert_eq!(base("   "), "");
        assert_eq!(base_subject("hello"), ("hello".to_string(), false));
    }

    #[test]
    fn reply_and_forward_prefixes() {
        assert_eq!(base_subject("Re: hello"), ("hello".to_string(), true));
        assert_eq!(base("RE: Re: re:hello"), "hello");
        assert_eq!(base("Fwd: hello"), "hello");
        assert_eq!(base("FW: hello"), "hello");
        assert_eq!(base("fwd:hello"), "hello");
        assert_eq!(base("Re : hello"), "hello");
        assert_eq!(base("Re[2]: hello"), "hello");
        assert_eq!(base("Re [2]: hello"), "hello");
        assert_eq!(base("Fwd [x]: y"), "y");
        assert_eq!(base("Re: "), "");
        // Not a subj-refwd.
        assert_eq!(base_subject("Ref: x"), ("Ref: x".to_string(), false));
        assert_eq!(base("Reply: x"), "Reply: x");
        assert_eq!(base("Re hello"), "Re hello");
    }

    #[test]
    fn blobs() {
        assert_eq!(
            base_subject("[list] Re: hello"),
            ("hello".to_string(), true)
        );
        assert_eq!(base_subject("[list] hello"), ("hello".to_string(), false));
        assert_eq!(base("Re: [list] hello"), "hello");
        assert_eq!(base("re:re:[a][b] c"), "c");
        assert_eq!(base("[a] [b] Re: [c] Fwd: d"), "d");
        // A blob that is the whole subject stays.
        assert_eq!(base("[list]"), "[list]");
        assert_eq!(base("Re: [list]"), "[list]");
        // Unclosed or nested brackets are no blob.
        assert_eq!(base("[a hello"), "[a hello");
        assert_eq!(base("[a [b] c"), "[a [b] c");
    }

    #[test]
    fn trailers_and_fwd_wrappers() {
        assert_eq!(base_subject("hello (fwd)"), ("hello".to_string(), true));
        assert_eq!(base("hello (FWD) (fwd)  "), "hello");
        assert_eq!(base_subject("[Fwd: hello]"), ("hello".to_string(), true));
        assert_eq!(base("[fwd: Re: hello] (fwd)"), "hello");
        assert_eq!(base("[Fwd: [Fwd: hello (fwd)]]"), "hello");
        assert_eq!(base("[fwd:]"), "");
        // Not a wrapper (the "]" is not at the end), but a blob that step 4 removes.
        assert_eq!(
            base_subject("[fwd: hello] there"),
            ("there".to_string(), false)
        );
    }

    #[test]
    fn non_ascii() {
        assert_eq!(base("Re: Grüße"), "Grüße");
        assert_eq!(base("[ü] AW: ü"), "AW: ü");
        assert_eq!(base("Grüße (fwd)"), "Grüße");
    }
}
