//! Stored message metadata (`mailfleet-message`) into the protocol crate's ENVELOPE and
//! BODYSTRUCTURE values, which its encoder writes (quoted or literal as the bytes require).

use mailfleet_imap_proto as proto;
use mailfleet_message::{Address, BodyPart, Envelope, PartKind};

fn bytes(s: &Option<String>) -> Option<Vec<u8>> {
    s.as_ref().map(|s| s.as_bytes().to_vec())
}

fn address(a: &Address) -> proto::Address {
    proto::Address {
        name: bytes(&a.name),
        adl: bytes(&a.adl),
        mailbox: bytes(&a.mailbox),
        host: bytes(&a.host),
    }
}

fn addresses(list: &[Address]) -> Vec<proto::Address> {
    list.iter().map(address).collect()
}

pub fn envelope(e: &Envelope) -> proto::Envelope {
    proto::Envelope {
        date: bytes(&e.date),
        subject: bytes(&e.subject),
        from: addresses(&e.from),
        sender: addresses(&e.sender),
        reply_to: addresses(&e.reply_to),
        to: addresses(&e.to),
        cc: addresses(&e.cc),
        bcc: addresses(&e.bcc),
        in_reply_to: bytes(&e.in_reply_to),
        message_id: bytes(&e.message_id),
    }
}

fn disposition(part: &BodyPart) -> Option<(String, Vec<(String, String)>)> {
    part.fields
        .disposition
        .as_ref()
        .map(|d| (d.kind.clone(), d.params.clone()))
}

/// BODY (`extended: false`) or BODYSTRUCTURE (`true`) of a part.
pub fn body(part: &BodyPart, extended: bool) -> proto::BodyStructure {
    let f = &part.fields;
    if let PartKind::Multipart { parts } = &part.kind {
        return proto::BodyStructure::Multi {
            parts: parts.iter().map(|p| body(p, extended)).collect(),
            subtype: part.media.subtype.clone(),
            ext: extended.then(|| proto::MultiExt {
                params: part.media.params.clone(),
                disposition: disposition(part),
                language: f.language.clone(),
                location: f.location.clone(),
            }),
        };
    }
    let kind = match &part.kind {
        PartKind::Text { lines } => proto::SingleKind::Text { lines: *lines },
        PartKind::Message {
            envelope: env,
            body: inner,
            lines,
        } => proto::SingleKind::Message {
            envelope: Box::new(envelope(env)),
            body: Box::new(body(inner, extended)),
            lines: *lines,
        },
        PartKind::Basic | PartKind::Multipart { .. } => proto::SingleKind::Basic,
    };
    proto::BodyStructure::Single {
        media_type: part.media.type_.clone(),
        subtype: part.media.subtype.clone(),
        params: part.media.params.clone(),
        id: f.id.clone(),
        description: f.description.clone(),
        encoding: f.encoding.clone(),
        size: part.size(),
        kind,
        ext: extended.then(|| proto::SingleExt {
            md5: f.md5.clone(),
            disposition: disposition(part),
            language: f.language.clone(),
            location: f.location.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailfleet_imap_proto::{Data, FetchData, Response};

    /// The protocol crate writes what the message crate's own printer writes.
    #[test]
    fn same_text_as_the_message_crate() {
        let raw = b"From: Ann <ann@example.test>\r\nTo: b@example.test\r\nSubject: hi\r\n\
            Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\n\
            hello\r\n--x\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; \
            filename=a.pdf\r\n\r\nAAAA\r\n--x--\r\n";
        let m = mailfleet_message::Metadata::parse(raw);
        for extended in [false, true] {
            let r = Response::Untagged(Data::Fetch {
                seq: 1,
                items: vec![FetchData::BodyStructure {
                    extended,
                    body: Box::new(body(&m.body, extended)),
                }],
            })
            .to_bytes();
            let text = String::from_utf8(r).unwrap();
            let expected = if extended {
                m.body.to_imap_bodystructure()
            } else {
                m.body.to_imap_body()
            };
            assert!(text.contains(&expected), "{text}\n{expected}");
        }
        let r = Response::Untagged(Data::Fetch {
            seq: 1,
            items: vec![FetchData::Envelope(Box::new(envelope(&m.envelope)))],
        })
        .to_bytes();
        let mut expected = String::new();
        mailfleet_message::write_envelope(&mut expected, &m.envelope);
        assert!(String::from_utf8(r).unwrap().contains(&expected));
    }
}
