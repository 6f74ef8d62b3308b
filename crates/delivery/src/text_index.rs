//! Indexing the text of messages the full-text index has no row for (see
//! `mailfleet_store::text_index`): the master's `text-index` job and `mailfleet store reindex`.

use mailfleet_store::{BlobStore, Store, StoreError};

/// What one page of [`index_missing_text`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TextIndexPage {
    /// Messages whose text went into the index.
    pub indexed: usize,
    /// Messages left without: text longer than the index takes, or a blob that is missing.
    pub skipped: usize,
    /// The last blob id looked at: where the next page starts. `None` when there was none
    /// left after `after` (the pass is over).
    pub last: Option<String>,
}

/// Indexes up to `limit` blobs after `after` (in id order) that messages name and the index
/// lacks, reading each from `blobs`: the same text delivery indexes.
pub async fn index_missing_text(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    after: &str,
    limit: i64,
) -> Result<TextIndexPage, StoreError> {
    let ids = mailfleet_store::text_index::blobs_without_text(store, after, limit).await?;
    let mut page = TextIndexPage {
        last: ids.last().cloned(),
        ..Default::default()
    };
    let mut texts = Vec::new();
    for id in ids {
        let raw = match blobs.get(&id).await {
            Ok(raw) => raw,
            Err(StoreError::BlobNotFound(_)) => {
                tracing::warn!("text index: blob {id} is missing");
                page.skipped += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        let meta = mailfleet_message::Metadata::parse(&raw);
        match mailfleet_message::index_text_whole(&raw, &meta) {
            Some(text) => texts.push((id, text)),
            None => page.skipped += 1,
        }
    }
    mailfleet_store::text_index::index_texts(store, &texts).await?;
    page.indexed = texts.len();
    Ok(page)
}
