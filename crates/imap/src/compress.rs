//! COMPRESS=DEFLATE (RFC 4978): after the tagged OK, which goes out uncompressed, everything
//! is raw DEFLATE both ways (`mailfleet_listener::deflate`). Offered once logged in; a second
//! COMPRESS gets `NO [COMPRESSIONACTIVE]`.

use mailfleet_imap_proto::Code;

use crate::session::{End, Reply, Session, Updates};

impl Session {
    pub async fn compress(&mut self, tag: &str, algorithm: &str) -> Result<(), End> {
        if self.conn.is_compressed() {
            let code = Code::Other("COMPRESSIONACTIVE".into(), None);
            let reply = Reply::no(Some(code), "DEFLATE is already active");
            return self.finish(tag, reply, Updates::All).await;
        }
        if !algorithm.eq_ignore_ascii_case("DEFLATE") {
            let reply = Reply::bad("unknown compression algorithm");
            return self.finish(tag, reply, Updates::All).await;
        }
        self.finish(tag, Reply::ok("DEFLATE active"), Updates::All)
            .await?;
        self.flush().await?;
        // What the client sent after the command is already compressed: it is inflated first.
        let pending = std::mem::take(&mut self.inbuf);
        self.decoder.reset();
        self.conn.start_deflate(&pending);
        tracing::debug!(session = %self.id, pending = pending.len(), "COMPRESS=DEFLATE active");
        Ok(())
    }
}
