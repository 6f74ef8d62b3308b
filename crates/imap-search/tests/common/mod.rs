//! Test messages: raw bytes, their metadata, and the session's view of them.

#![allow(dead_code)]

use mailfleet_imap_search::MessageView;
use mailfleet_message::Metadata;

/// 2024-02-01T00:00:00Z.
pub const FEB_1_2024: i64 = 1_706_745_600;
pub const DAY: i64 = 86_400;

pub struct Msg {
    pub raw: Vec<u8>,
    pub meta: Metadata,
    pub flags: Vec<String>,
    pub seq: u32,
    pub uid: u32,
    pub modseq: u64,
    pub internal_date: i64,
    pub recent: bool,
}

impl Msg {
    /// Message `seq` (UID `seq * 10`) with these bytes, internal date 2024-02-01 12:00 UTC.
    pub fn new(seq: u32, raw: impl AsRef<[u8]>) -> Msg {
        let raw = raw.as_ref().to_vec();
        Msg {
            meta: Metadata::parse(&raw),
            raw,
            flags: Vec::new(),
            seq,
            uid: seq.saturating_mul(10),
            modseq: 1,
            internal_date: FEB_1_2024 + DAY / 2,
            recent: false,
        }
    }

    pub fn flags(mut self, flags: &[&str]) -> Msg {
        self.flags = flags.iter().map(|f| f.to_string()).collect();
        self
    }

    pub fn date(mut self, internal: i64) -> Msg {
        self.internal_date = internal;
        self
    }

    /// The full view: raw header and text given.
    pub fn view(&self) -> MessageView<'_> {
        MessageView {
            raw_header: Some(&self.raw),
            text: Some(&self.raw),
            ..self.view_meta()
        }
    }

    /// Metadata only: no raw bytes.
    pub fn view_meta(&self) -> MessageView<'_> {
        MessageView {
            seq: self.seq,
            uid: self.uid,
            modseq: self.modseq,
            flags: &self.flags,
            internal_date: self.internal_date,
            size: self.raw.len() as u64,
            meta: &self.meta,
            raw_header: None,
            text: None,
            recent: self.recent,
        }
    }
}
