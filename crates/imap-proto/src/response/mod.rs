//! Server responses and their encoder.
//!
//! This file holds [`Response`] and its encoding; the files beside it hold the response codes,
//! the untagged data, FETCH's items and the writer of atoms, strings and literals.

mod codes;
mod data;
mod fetch;
mod write;

pub use codes::{Code, Status};
pub use data::{Data, EsearchData, ListData, NamespaceDesc, StatusValue, Thread};
pub use fetch::{Address, BodyStructure, Envelope, FetchData, MultiExt, SingleExt, SingleKind};

use crate::parse::base64_encode;
use write::W;

/// A response to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Tagged {
        tag: String,
        status: Status,
        code: Option<Code>,
        text: String,
    },
    Untagged(Data),
    /// `+ text`.
    Continue(String),
    /// `+ base64`, a SASL challenge.
    Challenge(Vec<u8>),
}

/// How strings are written: whether the client has enabled UTF-8 (IMAP4rev2, UTF8=ACCEPT), so
/// that 8-bit text may go in quoted strings and mailbox names are not modified UTF-7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EncodeOptions {
    pub utf8: bool,
}

impl Response {
    /// Appends the response, CRLF included, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>, opts: EncodeOptions) {
        let mut w = W { out, opts };
        match self {
            Response::Tagged {
                tag,
                status,
                code,
                text,
            } => {
                w.s(tag);
                w.s(" ");
                w.condition(*status, code, text);
            }
            Response::Untagged(d) => w.data(d),
            Response::Continue(text) => {
                w.s("+ ");
                w.text(text);
            }
            Response::Challenge(data) => {
                w.s("+ ");
                w.s(&base64_encode(data));
            }
        }
        w.s("\r\n");
    }

    /// The response as bytes, without UTF-8 enabled.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out, EncodeOptions::default());
        out
    }

    pub fn tagged(tag: &str, status: Status, code: Option<Code>, text: &str) -> Response {
        Response::Tagged {
            tag: tag.to_string(),
            status,
            code,
            text: text.to_string(),
        }
    }
}
