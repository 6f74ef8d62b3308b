//! The heap a compressed connection holds: its DEFLATE state, not what passes through it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use mailfleet_listener::deflate::Deflate;
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::SeqCst);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::SeqCst);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

#[tokio::test(flavor = "current_thread")]
async fn a_compressed_stream_holds_its_window_state_only() {
    // The peer's side, made before counting.
    let mut deflater = flate2::Compress::new(flate2::Compression::default(), false);
    let zeros = vec![0u8; 8 * 1024 * 1024];
    let mut bomb = Vec::with_capacity(64 * 1024);
    deflater
        .compress_vec(&zeros, &mut bomb, flate2::FlushCompress::Sync)
        .unwrap();
    assert_eq!(deflater.total_in(), zeros.len() as u64);
    drop(zeros);
    let (a, mut b) = duplex(1 << 20);
    let mut buf = vec![0u8; 16 * 1024];
    let mut sink = vec![0u8; 1 << 20];

    let before = LIVE.load(Ordering::SeqCst);
    let mut z = Deflate::new(a, &[]);
    let fresh = LIVE.load(Ordering::SeqCst) - before;

    // 8 MiB each way through it.
    b.write_all(&bomb).await.unwrap();
    let mut total = 0;
    let mut peak = fresh;
    while total < 8 * 1024 * 1024 {
        let n = z.read(&mut buf).await.unwrap();
        assert!(n > 0);
        total += n;
        peak = peak.max(LIVE.load(Ordering::SeqCst) - before);
    }
    for _ in 0..512 {
        z.write_all(&buf).await.unwrap();
        peak = peak.max(LIVE.load(Ordering::SeqCst) - before);
        while let Ok(Ok(_)) =
            tokio::time::timeout(std::time::Duration::from_millis(0), b.read(&mut sink)).await
        {
        }
    }
    z.flush().await.unwrap();
    peak = peak.max(LIVE.load(Ordering::SeqCst) - before);
    eprintln!("a new DEFLATE stream: {fresh} bytes; peak through 8 MiB each way: {peak} bytes");
    // miniz_oxide's compressor (about 310 KiB) and inflater (45 KiB), two 16 KiB buffers.
    assert!(fresh < 420 * 1024, "{fresh}");
    assert!(peak < 420 * 1024, "{peak}");
}
