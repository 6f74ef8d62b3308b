//! The fields SEARCH, SORT (RFC 5256, RFC 5957 SORT=DISPLAY) and THREAD (RFC 5256) compare,
//! decoded once.

use serde::{Deserialize, Serialize};

use crate::envelope::Envelope;
use crate::header::{Headers, date, decode_text, message_ids};
use crate::subject::base_subject;

/// An address as search and sort see it: the display name decoded (RFC 2047), the mailbox and
/// host as written.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SearchAddress {
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "m")]
    pub mailbox: String,
    #[serde(rename = "h")]
    pub host: String,
}

impl SearchAddress {
    /// `mailbox@host`.
    pub fn addr_spec(&self) -> String {
        format!("{}@{}", self.mailbox, self.host)
    }

    /// The display form SORT=DISPLAY compares (RFC 5957): the display name when there is a
    /// non-empty one, else the address.
    pub fn display(&self) -> String {
        match &self.name {
            Some(n) if !n.is_empty() => n.clone(),
            _ => self.addr_spec(),
        }
    }
}

/// Search, sort and thread fields of a message.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SearchFields {
    /// The Date header as seconds since the Unix epoch (UTC); None when absent or unparsable
    /// (SORT DATE then uses the internal date, RFC 5256 §2.2).
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub date: Option<i64>,
    /// From, To and Cc addresses (group markers left out).
    #[serde(
        rename = "f",
        default,
        deserialize_with = "crate::stored::exact_vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub from: Vec<SearchAddress>,
    #[serde(
        rename = "t",
        default,
        deserialize_with = "crate::stored::exact_vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub to: Vec<SearchAddress>,
    #[serde(
        rename = "c",
        default,
        deserialize_with = "crate::stored::exact_vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub cc: Vec<SearchAddress>,
    /// The subject, RFC 2047 words decoded; None when there is no Subject header.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// RFC 5256 §2.1 base subject (empty when there is no subject).
    #[serde(rename = "bs", default)]
    pub base_subject: String,
    /// The subject extraction removed a reply or forward marker.
    #[serde(rename = "rf", default)]
    pub is_reply_or_forward: bool,
    /// Message-ID, without angle brackets.
    #[serde(rename = "id", default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// In-Reply-To ids, without angle brackets.
    #[serde(
        rename = "ir",
        default,
        deserialize_with = "crate::stored::exact_vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub in_reply_to: Vec<String>,
    /// References ids in order, without angle brackets.
    #[serde(
        rename = "r",
        default,
        deserialize_with = "crate::stored::exact_vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub references: Vec<String>,
}

impl SearchFields {
    pub(crate) fn from_headers(h: &Headers<'_>, env: &Envelope) -> SearchFields {
        let addresses = |list: &[crate::address::Address]| {
            list.iter()
                .filter(|a| !a.is_group_marker())
                .map(|a| SearchAddress {
                    name: a
                        .name
                        .as_deref()
                        .map(|n| decode_text(n.as_bytes()))
                        .filter(|n| !n.is_empty()),
                    mailbox: a.mailbox.clone().unwrap_or_default(),
                    host: a.host.clone().unwrap_or_default(),
                })
                .collect::<Vec<_>>()
        };
        let subject = h.first("subject").map(|f| decode_text(f.value));
        let (base, reply) = subject.as_deref().map(base_subject).unwrap_or_default();
        let ids = |name: &str| {
            h.first(name)
                .map(|f| message_ids(f.value))
                .unwrap_or_default()
        };
        SearchFields {
            date: h.first("date").and_then(|f| date(f.value)),
            from: addresses(&env.from),
            to: addresses(&env.to),
            cc: addresses(&env.cc),
            subject,
            base_subject: base,
            is_reply_or_forward: reply,
            message_id: ids("message-id").into_iter().next(),
            in_reply_to: ids("in-reply-to"),
            references: ids("references"),
        }
    }

    /// SORT=DISPLAY's DISPLAYFROM key: the first From address's display form.
    pub fn display_from(&self) -> Option<String> {
        self.from.first().map(SearchAddress::display)
    }

    /// SORT=DISPLAY's DISPLAYTO key: the first To address's display form.
    pub fn display_to(&self) -> Option<String> {
        self.to.first().map(SearchAddress::display)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(raw: &[u8]) -> SearchFields {
        let len = crate::header::header_len(raw);
        let h = Headers::parse(&raw[..len]);
        let env = Envelope::from_headers(&h);
        SearchFields::from_headers(&h, &env)
    }

    #[test]
    fn decoded_names_subject_and_ids() {
        let f = fields(
            b"From: =?UTF-8?B?SsO8cmdlbg==?= <j@x.test>, plain@y.test\r\n\
To: Team: \"Ann\" <ann@x.test>;\r\n\
Cc: (Bob Comment) bob@x.test\r\n\
Subject: Re: =?ISO-8859-1?Q?Gr=FC=DFe?= (fwd)\r\n\
Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n\
Message-ID: <m1@x.test>\r\n\
In-Reply-To: <m0@x.test>\r\n\
References: <a@x.test>\r\n <m0@x.test>\r\n\r\n",
        );
        assert_eq!(f.from.len(), 2);
        assert_eq!(f.from[0].name.as_deref(), Some("Jürgen"));
        assert_eq!(f.display_from().as_deref(), Some("Jürgen"));
        assert_eq!(f.from[1].display(), "plain@y.test");
        assert_eq!(f.to.len(), 1, "group markers are not addresses");
        assert_eq!(f.display_to().as_deref(), Some("Ann"));
        assert_eq!(f.cc[0].display(), "Bob Comment");
        assert_eq!(f.subject.as_deref(), Some("Re: Grüße (fwd)"));
        assert_eq!(f.base_subject, "Grüße");
        assert!(f.is_reply_or_forward);
        assert_eq!(f.date, Some(1_057_049_557));
        assert_eq!(f.message_id.as_deref(), Some("m1@x.test"));
        assert_eq!(f.in_reply_to, vec!["m0@x.test"]);
        assert_eq!(f.references, vec!["a@x.test", "m0@x.test"]);
    }

    #[test]
    fn missing_headers() {
        let f = fields(b"X-Other: 1\r\n\r\nbody");
        assert_eq!(f, SearchFields::default());
        let f = fields(b"Date: yesterday\r\nSubject:\r\n\r\n");
        assert_eq!(f.date, None);
        assert_eq!(f.subject.as_deref(), Some(""));
    }
}
