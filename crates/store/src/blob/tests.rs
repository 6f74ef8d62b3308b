use super::*;

/// A put of bytes already stored refreshes the blob, and GC's last check spares a blob
/// refreshed after its grace period began.
#[tokio::test]
async fn a_second_put_refreshes_and_gc_spares_it() {
    let dir = tempfile::tempdir().unwrap();
    let b = FsBlobs::new(dir.path());
    let id = b.put(b"again").await.unwrap();
    let path = b.path_of(&id);
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let now = crate::now();
    // Old enough to collect...
    assert!(b.list().await.unwrap()[0].created <= now - 3600);
    // ...until the same bytes are stored again.
    assert_eq!(b.put(b"again").await.unwrap(), id);
    assert!(!b.delete_unless_newer(&id, now - 3600).await.unwrap());
    assert_eq!(b.get(&id).await.unwrap(), b"again");
    // Not refreshed: GC takes it.
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert!(b.delete_unless_newer(&id, now - 3600).await.unwrap());
    assert!(b.get(&id).await.is_err());
}

#[tokio::test]
async fn fs_put_get_delete_list() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FsBlobs::new(dir.path());
    let id = blobs.put(b"hello").await.unwrap();
    assert_eq!(id, blob_id(b"hello"));
    assert_eq!(blobs.put(b"hello").await.unwrap(), id);
    assert!(
        dir.path()
            .join(&id[0..2])
            .join(&id[2..4])
            .join(&id)
            .exists()
    );
    assert_eq!(blobs.get(&id).await.unwrap(), b"hello");
    let listed = blobs.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    blobs.delete(&id).await.unwrap();
    assert!(matches!(
        blobs.get(&id).await,
        Err(StoreError::BlobNotFound(_))
    ));
    assert!(matches!(
        blobs.get("../etc/passwd").await,
        Err(StoreError::BlobNotFound(_))
    ));
}

/// A range is read from the file alone: start, middle, end, past the end, and ranges that
/// run past the end are cut there.
#[tokio::test]
async fn fs_reads_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FsBlobs::new(dir.path());
    let bytes: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let id = blobs.put(&bytes).await.unwrap();
    let cases: [(u64, u64, std::ops::Range<usize>); 9] = [
        (0, 10, 0..10),
        (0, 0, 0..0),
        (5000, 123, 5000..5123),
        (9990, 10, 9990..10_000),
        (9990, 100, 9990..10_000),
        (0, u64::MAX, 0..10_000),
        (10_000, 1, 0..0),
        (20_000, 5, 0..0),
        (u64::MAX, u64::MAX, 0..0),
    ];
    for (offset, len, want) in cases {
        let got = blobs.get_range(&id, offset, len).await.unwrap();
        assert_eq!(got, bytes[want.clone()], "{offset}+{len}");
        // The default (a slice of the whole blob) agrees.
        assert_eq!(slice_range(bytes.clone(), offset, len), bytes[want]);
    }
    assert!(matches!(
        blobs.get_range(&blob_id(b"absent"), 0, 1).await,
        Err(StoreError::BlobNotFound(_))
    ));
    assert!(matches!(
        blobs.get_range("../x", 0, 1).await,
        Err(StoreError::BlobNotFound(_))
    ));
}

#[tokio::test]
async fn fs_prepares_fan_out_once_and_cleans_stale_temp() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("blobs");
    let blobs = FsBlobs::new(&root).with_temp_prefix("n7");
    blobs.put(b"first").await.unwrap();
    for top in ["00", "7f", "ff"] {
        assert!(root.join(top).is_dir(), "{top} missing");
    }
    // A write that died between its temp file and the rename.
    let stale = root.join("tmp").join("n7.leftover");
    std::fs::write(&stale, b"partial").unwrap();
    let now = crate::model::now();
    assert_eq!(blobs.remove_stale_temp(now - 3600).await.unwrap(), 0);
    assert!(stale.exists(), "a recent temp file may still be in use");
    assert_eq!(blobs.remove_stale_temp(now + 10).await.unwrap(), 1);
    assert!(!stale.exists());
    // Writes after the first do not need the tree again, even in a new leaf.
    let id = blobs.put(b"second").await.unwrap();
    assert_eq!(blobs.get(&id).await.unwrap(), b"second");
    assert_eq!(blobs.list().await.unwrap().len(), 2);
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
}

#[tokio::test]
async fn spooled_files_are_moved_into_place() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FsBlobs::new(dir.path().join("blobs"));
    let spool = crate::spool::Spool::new(dir.path().join("tmp"), "n1", 8);
    spool.prepare().unwrap();
    let message = |body: &'static [u8]| {
        let spool = spool.clone();
        async move {
            let mut w = spool.writer(Box::new(|_: &[u8], _| b"Received: x\r\n".to_vec()));
            w.write(body).await.unwrap();
            match w.finish().await.unwrap() {
                crate::spool::Spooled::File(f) => f,
                crate::spool::Spooled::Memory(_) => panic!("not spilled"),
            }
        }
    };
    let f = message(b"a message longer than eight bytes").await;
    let spooled_at = f.path().to_path_buf();
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&spooled_at).unwrap());
    let id = blobs.put_spooled(f).await.unwrap();
    let stored = blobs.get(&id).await.unwrap();
    assert_eq!(stored, b"Received: x\r\na message longer than eight bytes");
    assert_eq!(id, blob_id(&stored));
    assert!(!spooled_at.exists(), "moved, not copied");
    let at = dir
        .path()
        .join("blobs")
        .join(&id[0..2])
        .join(&id[2..4])
        .join(&id);
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&at).unwrap()),
        inode,
        "the same file, renamed"
    );
    // The same bytes again: the blob is already there and the spool file goes.
    let again = message(b"a message longer than eight bytes").await;
    let again_at = again.path().to_path_buf();
    assert_eq!(blobs.put_spooled(again).await.unwrap(), id);
    assert!(!again_at.exists());
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
}
