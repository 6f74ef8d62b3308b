//! The other processes of the store's multi-process test (`concurrent_appends_in_eight_processes`
//! in tests/store.rs, which builds and starts this program): opens the store at `URL`, appends
//! `COUNT` small messages to mailbox `MAILBOX_ID` and exits; any failure exits non-zero.
//!
//! usage: append_worker URL MAILBOX_ID COUNT

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, mailbox, count] = args.as_slice() else {
        eprintln!("usage: append_worker URL MAILBOX_ID COUNT");
        return ExitCode::from(2);
    };
    let (Ok(mailbox), Ok(count)) = (mailbox.parse::<i64>(), count.parse::<usize>()) else {
        eprintln!("append_worker: MAILBOX_ID and COUNT are numbers");
        return ExitCode::from(2);
    };
    let store = match mailfleet_store::open(url).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("append_worker: {e}");
            return ExitCode::FAILURE;
        }
    };
    for i in 0..count {
        let name = format!("p{}-{i}", std::process::id());
        if let Err(e) = store.append(mailbox, &name, 10, 0, &[], None).await {
            eprintln!("append_worker: append {i}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
