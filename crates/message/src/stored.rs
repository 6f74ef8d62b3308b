//! The stored form: versioned JSON with short keys, the part tree flattened in depth-first
//! order (each multipart says how many parts follow as its children; a message part's nested
//! body is the part after it), so that nesting in the JSON stays shallow whatever the message.

use serde::{Deserialize, Serialize};

use crate::Metadata;
use crate::bodystructure::{BodyPart, MediaType, PartFields, PartKind, PartOffsets};
use crate::envelope::Envelope;
use crate::limits::{MAX_DEPTH, MAX_PARTS};
use crate::search::SearchFields;

/// The version written by [`Metadata::to_stored`]; bumped whenever the stored form or the way
/// a field is computed changes, so the store knows to compute a message's metadata again.
pub const STORED_VERSION: u32 = 1;

/// Why a stored form could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    /// Written by another version of this crate: compute the metadata again from the blob.
    #[error("stored message metadata has version {found}, this build reads version {expected}")]
    Version { found: u32, expected: u32 },
    #[error("stored message metadata is not valid JSON of its form: {0}")]
    Json(#[from] serde_json::Error),
    #[error("stored message metadata has a malformed part list: {0}")]
    Parts(&'static str),
}

#[derive(Serialize, Deserialize)]
struct Stored {
    v: u32,
    z: u64,
    e: Envelope,
    p: Vec<StoredPart>,
    s: SearchFields,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pv: String,
    #[serde(default)]
    a: bool,
}

/// [`Stored`] without the part tree and the preview, which are skipped unparsed.
#[derive(Deserialize)]
struct StoredLight {
    v: u32,
    z: u64,
    e: Envelope,
    #[allow(dead_code)]
    p: serde::de::IgnoredAny,
    s: SearchFields,
    #[serde(default)]
    a: bool,
}

/// `deserialize_with` for the stored form's lists: a list of one entry gets a vector with room
/// for one (longer lists grow as usual). serde's own `Vec` starts with room for four on the
/// first entry, and the lists here mostly hold one address or id: a node keeping 100,000
/// messages' metadata kept three unused address slots (288 bytes) per list.
pub(crate) fn exact_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Exact<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Exact<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
            while let Some(x) = seq.next_element()? {
                if v.capacity() == 0 {
                    v.reserve_exact(1);
                }
                v.push(x);
            }
            Ok(v)
        }
    }
    d.deserialize_seq(Exact(std::marker::PhantomData))
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u32,
}

const BASIC: u8 = 0;
const TEXT: u8 = 1;
const MESSAGE: u8 = 2;
const MULTIPART: u8 = 3;

#[derive(Serialize, Deserialize)]
struct StoredPart {
    o: PartOffsets,
    m: MediaType,
    f: PartFields,
    k: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    l: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<Envelope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n: Option<u32>,
}

fn flatten(part: &BodyPart, out: &mut Vec<StoredPart>) {
    let (k, l, e, n) = match &part.kind {
        PartKind::Basic => (BASIC, None, None, None),
        PartKind::Text { lines } => (TEXT, Some(*lines), None, None),
        PartKind::Message {
            envelope, lines, ..
        } => (MESSAGE, Some(*lines), Some((**envelope).clone()), None),
        PartKind::Multipart { parts } => (MULTIPART, None, None, Some(parts.len() as u32)),
    };
    out.push(StoredPart {
        o: part.offsets,
        m: part.media.clone(),
        f: part.fields.clone(),
        k,
        l,
        e,
        n,
    });
    match &part.kind {
        PartKind::Multipart { parts } => parts.iter().for_each(|p| flatten(p, out)),
        PartKind::Message { body, .. } => flatten(body, out),
        _ => {}
    }
}

fn unflatten(
    it: &mut std::vec::IntoIter<StoredPart>,
    depth: usize,
) -> Result<BodyPart, StoredError> {
    if depth > MAX_DEPTH + 1 {
        return Err(StoredError::Parts("nested too deeply"));
    }
    let sp = it
        .next()
        .ok_or(StoredError::Parts("fewer parts than listed"))?;
    if sp.o.header_start > sp.o.body_start || sp.o.body_start > sp.o.body_end {
        return Err(StoredError::Parts("offsets out of order"));
    }
    let kind = match sp.k {
        BASIC => PartKind::Basic,
        TEXT => PartKind::Text {
            lines: sp.l.unwrap_or_default(),
        },
        MESSAGE => PartKind::Message {
            envelope: Box::new(sp.e.unwrap_or_default()),
            body: Box::new(unflatten(it, depth + 1)?),
            lines: sp.l.unwrap_or_default(),
        },
        MULTIPART => {
            let n = sp.n.unwrap_or_default() as usize;
            if n == 0 || n > MAX_PARTS {
                return Err(StoredError::Parts("bad number of sub-parts"));
            }
            let mut parts = Vec::with_capacity(n);
            for _ in 0..n {
                parts.push(unflatten(it, depth + 1)?);
            }
            PartKind::Multipart { parts }
        }
        _ => return Err(StoredError::Parts("unknown part kind")),
    };
    Ok(BodyPart {
        offsets: sp.o,
        media: sp.m,
        fields: sp.f,
        kind,
    })
}

pub(crate) fn to_stored(m: &Metadata) -> String {
    let mut parts = Vec::new();
    flatten(&m.body, &mut parts);
    let stored = Stored {
        v: STORED_VERSION,
        z: m.size,
        e: m.envelope.clone(),
        p: parts,
        s: m.search.clone(),
        pv: m.preview.clone(),
        a: m.has_attachment,
    };
    // Serialising these plain structs to a string cannot fail.
    serde_json::to_string(&stored).unwrap_or_default()
}

/// Parses a stored form as `T`: a form of another version is [`StoredError::Version`] (also
/// when it does not parse as `T`), anything else that does not parse is [`StoredError::Json`].
fn read_versioned<T: serde::de::DeserializeOwned>(
    s: &str,
    version: impl Fn(&T) -> u32,
) -> Result<T, StoredError> {
    let wrong = |found| StoredError::Version {
        found,
        expected: STORED_VERSION,
    };
    match serde_json::from_str::<T>(s) {
        Ok(st) if version(&st) == STORED_VERSION => Ok(st),
        Ok(st) => Err(wrong(version(&st))),
        Err(e) => Err(match serde_json::from_str::<VersionOnly>(s) {
            Ok(VersionOnly { v }) if v != STORED_VERSION => wrong(v),
            _ => e.into(),
        }),
    }
}

/// [`from_stored`] without the MIME tree (an empty message's) and the preview (empty): what
/// SEARCH without BODY/TEXT, SORT and THREAD read, at a fraction of the parsing.
pub(crate) fn from_stored_light(s: &str) -> Result<Metadata, StoredError> {
    let stored: StoredLight = read_versioned(s, |st: &StoredLight| st.v)?;
    Ok(Metadata {
        size: stored.z,
        envelope: stored.e,
        body: Metadata::empty_body(),
        search: stored.s,
        preview: String::new(),
        has_attachment: stored.a,
    })
}

pub(crate) fn from_stored(s: &str) -> Result<Metadata, StoredError> {
    let stored: Stored = read_versioned(s, |st: &Stored| st.v)?;
    let mut it = stored.p.into_iter();
    let body = unflatten(&mut it, 0)?;
    if it.next().is_some() {
        return Err(StoredError::Parts("more parts than listed"));
    }
    Ok(Metadata {
        size: stored.z,
        envelope: stored.e,
        body: std::sync::Arc::new(body),
        search: stored.s,
        preview: stored.pv,
        has_attachment: stored.a,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &[u8] = b"From: Ann <ann@example.test>\r\nTo: b@example.test, c@example.test, \
        d@example.test\r\nSubject: Hi\r\nMessage-ID: <x@example.test>\r\n\r\nbody\r\n";

    #[test]
    fn lists_read_back_hold_no_spare_room_and_light_reads_share_one_empty_tree() {
        let meta = Metadata::parse(RAW);
        let stored = meta.to_stored();
        let whole = from_stored(&stored).unwrap();
        assert_eq!(whole, meta);
        let light = from_stored_light(&stored).unwrap();
        assert_eq!(light.envelope, meta.envelope);
        assert_eq!(light.search, meta.search);
        // One address: room for one (serde's own Vec would have room for four).
        assert_eq!(light.envelope.from.len(), 1);
        assert_eq!(light.envelope.from.capacity(), 1);
        assert_eq!(light.search.from.capacity(), 1);
        assert_eq!(light.envelope.to.len(), 3);
        let again = from_stored_light(&stored).unwrap();
        assert!(std::sync::Arc::ptr_eq(&light.body, &again.body));
        assert!(std::sync::Arc::ptr_eq(&light.body, &Metadata::empty_body()));
    }
}
