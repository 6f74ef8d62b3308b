//! mailfleet message metadata: everything IMAP FETCH, SEARCH, SORT and THREAD need from a
//! message, computed once from its raw bytes (at delivery and at APPEND) and kept with the
//! message, so that the blob is opened again only for the bytes a client asks for.
//! Sans-IO: pure functions over a byte slice, no store, no async.
//!
//! ```
//! let raw = b"From: Ann <ann@example.test>\r\nSubject: Re: hi\r\n\r\nHello!\r\n";
//! let m = mailfleet_message::Metadata::parse(raw);
//! assert_eq!(m.search.base_subject, "hi");
//! assert_eq!(m.preview, "Hello!");
//! assert_eq!(
//!     m.body.to_imap_body(),
//!     r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 8 1)"#
//! );
//! let stored = m.to_stored();
//! assert_eq!(mailfleet_message::Metadata::from_stored(&stored).unwrap(), m);
//! ```
//!
//! # What [`Metadata`] holds
//!
//! - [`Envelope`] (`envelope.rs`, `address.rs`): ENVELOPE as RFC 9051 §7.5.2 defines it, the
//!   header values kept as written (RFC 2047 words are the client's to decode), addresses as
//!   (name, adl, mailbox, host) with group markers; [`Envelope::to_imap`] prints it.
//! - [`BodyPart`] (`bodystructure.rs`): the MIME tree, each part with its BODYSTRUCTURE
//!   fields (type, parameters, id, description, encoding, size, lines, MD5, disposition,
//!   language, location; message/rfc822 parts with their envelope and nested structure) and
//!   its [`PartOffsets`] in the raw message, so `BODY[1.2]`, `BODY[1.2.MIME]`,
//!   `BODY[1.HEADER]` are range reads of the blob. [`BodyPart::section`] resolves a section
//!   number; [`BodyPart::to_imap_body`] and [`BodyPart::to_imap_bodystructure`] print BODY and
//!   BODYSTRUCTURE (`imap.rs` holds the printer).
//! - [`SearchFields`] (`search.rs`, `subject.rs`): Date as a UTC timestamp, From/To/Cc with
//!   decoded display names and SORT=DISPLAY forms, the decoded subject and its RFC 5256 base
//!   subject ([`base_subject`]), Message-ID, In-Reply-To and References.
//! - `preview` and `has_attachment` (`preview.rs`): an RFC 8970 preview of at most 256
//!   characters from the first text/plain part (else text/html without its markup); and
//!   whether some part is an attachment: a part with disposition `attachment`, or a non-text
//!   leaf or message/rfc822 part that is not `inline` and (for leaves) neither directly inside
//!   a multipart/related nor a multipart/signed's signature, forwarded messages' insides not
//!   looked at.
//!
//! - [`index_text`] (`index.rs`): the searchable text of a message for the store's full-text
//!   index (header blocks, decoded header words, text bodies decoded), lower-cased, at most
//!   [`MAX_INDEX_TEXT`] bytes; [`index_text_whole`] gives it only when nothing was cut.
//!
//! # Stored form
//!
//! [`Metadata::to_stored`] gives compact JSON with a version field ([`STORED_VERSION`]) for a
//! column of the message row; [`Metadata::from_stored`] reads it back, and says
//! [`StoredError::Version`] when it was written by another version (compute it again then).
//!
//! # Bounds
//!
//! [`Metadata::parse`] accepts any bytes and never panics. Its work is bounded by [`limits`]:
//! at most [`limits::MAX_DEPTH`] levels of nesting are split (a boundary scan per level), at
//! most [`limits::MAX_PARTS`] parts are listed, at most [`limits::MAX_HEADER_BYTES`] of each
//! header block are read for fields, at most [`limits::MAX_PREVIEW_INPUT`] bytes are decoded
//! for the preview. CRLF and bare-LF messages are both read; offsets count the bytes as they
//! are.
//!
//! # Choices where servers differ
//!
//! Media types, subtypes, parameter names, encodings and disposition types are upper-cased as
//! in RFC 9051's examples; a text part without a charset says `CHARSET US-ASCII`; addresses
//! with no domain get the host `MISSING_DOMAIN` and with no local part the mailbox
//! `MISSING_MAILBOX` (so they cannot be mistaken for group markers). The per-module docs give
//! the rest.

mod address;
mod bodystructure;
mod envelope;
mod header;
mod imap;
mod index;
pub mod limits;
mod preview;
mod search;
mod stored;
mod subject;
mod transfer;

use std::sync::{Arc, OnceLock};

pub use address::{Address, MISSING_DOMAIN, MISSING_MAILBOX, parse_address_list};
pub use bodystructure::{BodyPart, Disposition, MediaType, PartFields, PartKind, PartOffsets};
pub use envelope::Envelope;
pub use imap::{MAX_QUOTED, write_body, write_envelope, write_nstring, write_string};
pub use index::{MAX_INDEX_TEXT, index_text, index_text_whole};
pub use search::{SearchAddress, SearchFields};
pub use stored::{STORED_VERSION, StoredError};
pub use subject::base_subject;
pub use transfer::{decode_base64, decode_quoted_printable};

/// Everything IMAP needs of one message, computed by [`Metadata::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// Size of the raw message in octets (RFC822.SIZE).
    pub size: u64,
    /// The message's ENVELOPE.
    pub envelope: Envelope,
    /// The top-level part: the message's header and body, and the MIME tree under it. Shared
    /// (an `Arc`) so that metadata read without its tree ([`Metadata::from_stored_light`])
    /// points at one empty tree instead of holding a copy of its own.
    pub body: Arc<BodyPart>,
    /// Search, sort and thread fields.
    pub search: SearchFields,
    /// RFC 8970 preview (may be empty).
    pub preview: String,
    /// Whether the message has an attachment (see the crate documentation for the rule).
    pub has_attachment: bool,
}

impl Metadata {
    /// Computes the metadata of a raw message. Never panics; any input gives a result.
    pub fn parse(raw: &[u8]) -> Metadata {
        let body = bodystructure::parse(raw);
        let headers = header::Headers::parse(&raw[body.offsets.header()]);
        let envelope = Envelope::from_headers(&headers);
        let search = SearchFields::from_headers(&headers, &envelope);
        let preview = preview::preview(raw, &body);
        let has_attachment = preview::has_attachment(&body);
        Metadata {
            size: raw.len() as u64,
            envelope,
            body: Arc::new(body),
            search,
            preview,
            has_attachment,
        }
    }

    /// The MIME tree of an empty message, shared by every metadata kept without its tree.
    pub fn empty_body() -> Arc<BodyPart> {
        static EMPTY: OnceLock<Arc<BodyPart>> = OnceLock::new();
        EMPTY
            .get_or_init(|| Arc::new(bodystructure::parse(b"")))
            .clone()
    }

    /// The stored form (versioned JSON).
    pub fn to_stored(&self) -> String {
        stored::to_stored(self)
    }

    /// Reads a stored form written by [`Metadata::to_stored`].
    pub fn from_stored(s: &str) -> Result<Metadata, StoredError> {
        stored::from_stored(s)
    }

    /// Reads a stored form without its MIME tree and preview (left as an empty message's):
    /// the envelope, the search/sort/thread fields, size and has-attachment.
    pub fn from_stored_light(s: &str) -> Result<Metadata, StoredError> {
        stored::from_stored_light(s)
    }

    /// The part a section number names (`&[1, 2]` for `BODY[1.2]`); see [`BodyPart::section`].
    pub fn section(&self, path: &[u32]) -> Option<&BodyPart> {
        self.body.section(path)
    }
}
