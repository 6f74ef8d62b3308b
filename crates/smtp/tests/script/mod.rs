//! Runs a scenario of `tests/states.py` against a test server.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use crate::common::Server;

/// Runs scenario `name` of `tests/states.py` against `s` and returns its output; panics with
/// the output if it fails, or if it takes more than 60 s (the script is killed then).
pub async fn scenario(s: &Server, name: &str, extra: &[&str]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/states.py");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("python3")
            .arg(&script)
            .arg(name)
            .arg(s.mx.port().to_string())
            .arg(s.submission.port().to_string())
            .arg(s.submissions.port().to_string())
            .args(extra)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("scenario {name} timed out"))
    .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "scenario {name} failed:\n{text}");
    text
}

pub fn text(m: &[u8]) -> String {
    String::from_utf8_lossy(m).into_owned()
}

/// The Subject of each message.
pub fn subjects(msgs: &[Vec<u8>]) -> Vec<String> {
    msgs.iter()
        .filter_map(|m| {
            text(m)
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
        })
        .collect()
}
