//! Promises ARCHITECTURE.md makes about the store that only show when several nodes meet.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use mailfleet_test_support::PgServer;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Nodes starting together on a new PostgreSQL database: each runs the migrations, and the
/// advisory lock makes them take turns. Without it the first `CREATE TABLE`s of two nodes
/// collide and a node fails to start ("duplicate key value violates unique constraint").
/// Each node is a thread with a runtime and a connection pool of its own.
#[test]
fn postgres_migrations_of_nodes_starting_together_do_not_race() {
    const NODES: usize = 8;
    const ROUNDS: usize = 4;
    let pg = PgServer::start();
    for round in 0..ROUNDS {
        let url = pg.create_database(&format!("migrate_race_{round}"));
        // Every node's start released at once.
        let go = Arc::new(Barrier::new(NODES));
        let nodes: Vec<_> = (0..NODES)
            .map(|_| {
                let (url, go) = (url.clone(), go.clone());
                std::thread::spawn(move || {
                    let rt = runtime();
                    go.wait();
                    rt.block_on(async {
                        let opened = tokio::time::timeout(
                            Duration::from_secs(60),
                            mailfleet_store::open(&url),
                        )
                        .await
                        .map_err(|_| "start took over 60 s".to_string())?
                        .map_err(|e| e.to_string())?;
                        opened
                            .add_domain(&format!("n{}.test", rand_id()))
                            .await
                            .map_err(|e| e.to_string())
                    })
                })
            })
            .collect();
        for (i, n) in nodes.into_iter().enumerate() {
            if let Err(e) = n.join().unwrap() {
                panic!("round {round}: node {i} did not start: {e}");
            }
        }
        // Every version applied exactly once, in order, and every node could write.
        runtime().block_on(async {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let versions: Vec<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            assert!(versions.len() >= 2, "{versions:?}");
            let expected: Vec<i64> = (1..=versions.len() as i64).collect();
            assert_eq!(versions, expected, "round {round}");
            let domains: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM domains")
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(domains, NODES as i64);
            pool.close().await;
        });
    }
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}
