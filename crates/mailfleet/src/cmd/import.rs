//! `mailfleet import accounts FILE.csv`: bulk account creation.
//!
//! Each line is `address,password,quota[,shard]` (an optional first line `address,...` is a
//! header; an argon2id hash may be written unquoted, commas and all). The file is streamed: a reader thread parses it while lines are checked (address,
//! size, domain exists, not a duplicate, shard exists), placed on shards, and committed in
//! batches through `Store::create_accounts`, all or none per batch. Plaintext passwords are
//! hashed with argon2id on every core; a password that already is an argon2id PHC string is
//! stored as it is. A bad line is reported as `line N: <problem>` and skipped; if a batch fails
//! anyway (an account created meanwhile by someone else), its lines are retried one by one so
//! only the bad ones are skipped. No account is ever half created: each one is created with its
//! INBOX in one transaction.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mailfleet_store::address::{domain_of, normalize_address};
use mailfleet_store::password::{hash_password, is_argon2id_hash};
use mailfleet_store::{NewAccount, Store, StoreError};
use rayon::prelude::*;
use tokio::sync::mpsc;

use super::output::count;
use super::placement::{self, Placer};
use super::size::parse_size;
use super::{StoreOpt, store_err};

#[derive(Args)]
pub struct ImportCmd {
    #[command(flatten)]
    store: StoreOpt,
    #[command(subcommand)]
    what: ImportWhat,
}

#[derive(Subcommand)]
enum ImportWhat {
    /// Create accounts from a CSV file: address,password,quota[,shard]. The password is taken
    /// exactly as written (quote it if it contains commas); an argon2id PHC string
    /// (`$argon2id$...`) is kept as the hash. The quota is a size (500M, 2G, bytes; empty, 0 or
    /// unlimited for none). Without a shard the placement policy chooses. Bad lines are
    /// reported and skipped; the exit code is 1 if any line was skipped.
    Accounts {
        file: PathBuf,
        /// Count accounts that already exist as present instead of as bad lines (for re-running
        /// an interrupted import).
        #[arg(long)]
        skip_existing: bool,
        /// Accounts per transaction.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        batch_size: u32,
    },
}

pub async fn run(cmd: ImportCmd) -> anyhow::Result<()> {
    match cmd.what {
        ImportWhat::Accounts {
            file,
            skip_existing,
            batch_size,
        } => import_accounts(&cmd.store, &file, skip_existing, batch_size as usize).await,
    }
}

/// One record as the reader thread hands it over.
struct RawLine {
    line: u64,
    /// Offset just past the record, for the progress bar.
    byte: u64,
    fields: Result<Vec<String>, String>,
}

enum Password {
    Plain(String),
    Hash(String),
}

/// A checked line waiting for its batch.
struct Pending {
    line: u64,
    address: String,
    password: Password,
    quota_bytes: i64,
    shard: String,
}

#[derive(Default)]
struct Stats {
    lines: u64,
    imported: u64,
    bad: u64,
    existing: u64,
}

struct Importer {
    store: Arc<dyn Store>,
    placer: Placer,
    skip_existing: bool,
    /// Domains looked up so far: exists or not.
    domains: HashMap<String, bool>,
    /// Addresses of the domains seen: `None` if in the store before the import, else the line
    /// that created it.
    known: HashMap<String, Option<u64>>,
    loaded: HashSet<String>,
    stats: Stats,
    progress: ProgressBar,
    /// Batches being committed.
    in_flight: tokio::task::JoinSet<BatchOutcome>,
}

/// Why a line is skipped: a problem with the line, or a failure that ends the import.
enum LineError {
    Bad(String),
    Fatal(anyhow::Error),
}

impl From<anyhow::Error> for LineError {
    fn from(e: anyhow::Error) -> Self {
        LineError::Fatal(e)
    }
}

/// Store errors that concern one account rather than the store as a whole.
fn is_per_account(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::AccountExists(_) | StoreError::DomainNotFound(_) | StoreError::Invalid(_)
    )
}

async fn import_accounts(
    store_opt: &StoreOpt,
    path: &Path,
    skip_existing: bool,
    batch_size: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    let total_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let store = store_opt.open().await?;
    let placer = placement::load(store.as_ref()).await?;

    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {msg} ({elapsed}, {eta} left)",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };

    let (tx, mut rx) = mpsc::channel::<RawLine>(batch_size.clamp(256, 8192) * 2);
    let reader = tokio::task::spawn_blocking(move || read_lines(file, tx));

    let mut imp = Importer {
        store,
        placer,
        skip_existing,
        domains: HashMap::new(),
        known: HashMap::new(),
        loaded: HashSet::new(),
        stats: Stats::default(),
        progress,
        in_flight: tokio::task::JoinSet::new(),
    };
    let mut batch: Vec<Pending> = Vec::with_capacity(batch_size);
    let mut first = true;
    let outcome: anyhow::Result<()> = async {
        while let Some(raw) = rx.recv().await {
            let header = first
                && raw.fields.as_ref().is_ok_and(|f| {
                    f.first()
                        .is_some_and(|a| a.trim().eq_ignore_ascii_case("address"))
                });
            first = false;
            if header {
                continue;
            }
            imp.stats.lines += 1;
            if imp.stats.lines.is_multiple_of(256) {
                imp.progress.set_position(raw.byte);
                imp.progress.set_message(format!(
                    "{} imported, {} skipped",
                    imp.stats.imported, imp.stats.bad
                ));
            }
            let line = raw.line;
            match imp.check(raw).await {
                Ok(Some(p)) => batch.push(p),
                Ok(None) => {}
                Err(LineError::Bad(problem)) => imp.report(line, &problem),
                Err(LineError::Fatal(e)) => return Err(e),
            }
            if batch.len() >= batch_size {
                imp.commit(std::mem::take(&mut batch)).await?;
            }
        }
        if !batch.is_empty() {
            imp.commit(std::mem::take(&mut batch)).await?;
        }
        imp.finish().await
    }
    .await;
    // After a failure, let the batches under way end (and count them) before reporting.
    let outcome = match outcome {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = imp.finish().await;
            Err(e)
        }
    };
    // Stop the reader (if the loop ended early) and learn whether reading failed.
    drop(rx);
    let read_result = reader
        .await
        .map_err(|e| anyhow::anyhow!("the CSV reader task failed: {e}"))?;
    imp.progress.finish_and_clear();
    let stats = &imp.stats;
    if let Err(e) = outcome {
        anyhow::bail!(
            "import stopped: {} ({} accounts were imported before it)",
            crate::error_text::error_text(e.as_ref()),
            stats.imported
        );
    }
    if let Err(e) = read_result {
        anyhow::bail!(
            "import stopped: cannot read {}: {e} ({} accounts were imported before it)",
            path.display(),
            stats.imported
        );
    }
    let mut summary = format!(
        "imported {} from {} in {:.1}s",
        count(stats.imported, "account", "accounts"),
        count(stats.lines, "line", "lines"),
        started.elapsed().as_secs_f64()
    );
    if stats.existing > 0 {
        summary.push_str(&format!("; {} already existed", stats.existing));
    }
    if stats.bad > 0 {
        summary.push_str(&format!(
            "; {} skipped",
            count(stats.bad, "bad line", "bad lines")
        ));
    }
    println!("{summary}");
    if stats.bad > 0 {
        anyhow::bail!(
            "{} skipped (listed above as `line N: ...`)",
            count(stats.bad, "bad line", "bad lines")
        );
    }
    Ok(())
}

/// Longest line accepted; a longer one is reported and skipped.
const MAX_LINE: usize = 64 * 1024;

/// Reads the file line by line (runs on a blocking thread). Blank lines are skipped; a UTF-8
/// byte order mark on the first line is ignored. One account per line: quoted fields may hold
/// commas and doubled quotes, but not line breaks.
fn read_lines(file: std::fs::File, tx: mpsc::Sender<RawLine>) -> Result<(), String> {
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut buf = Vec::with_capacity(256);
    let mut line = 0u64;
    let mut byte = 0u64;
    loop {
        buf.clear();
        let (n, too_long) =
            read_line_bounded(&mut reader, &mut buf, MAX_LINE).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(());
        }
        line += 1;
        byte += n as u64;
        let fields = if too_long {
            Err(format!("line longer than {MAX_LINE} bytes"))
        } else {
            let mut text: &[u8] = &buf;
            if line == 1 {
                text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
            }
            while let Some((last, rest)) = text.split_last() {
                if *last == b'\n' || *last == b'\r' {
                    text = rest;
                } else {
                    break;
                }
            }
            if text.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            std::str::from_utf8(text)
                .map_err(|_| "not valid UTF-8".to_string())
                .and_then(split_fields)
        };
        if tx.blocking_send(RawLine { line, byte, fields }).is_err() {
            // The importer stopped; it reports why.
            return Ok(());
        }
    }
}

/// Reads up to and including the next `\n` into `buf`, keeping at most `max` bytes: returns
/// the bytes consumed and whether the line was longer (then `buf` is left empty).
fn read_line_bounded(
    reader: &mut impl std::io::BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<(usize, bool)> {
    let mut consumed = 0;
    let mut too_long = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok((consumed, too_long));
        }
        let (len, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if !too_long {
            if buf.len() + len > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&available[..len]);
            }
        }
        reader.consume(len);
        consumed += len;
        if done {
            return Ok((consumed, too_long));
        }
    }
}

/// Splits one CSV line into fields. A field is either unquoted (no `"` in it) or quoted, with
/// `""` standing for a quote; blanks around a quoted field are ignored.
fn split_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        let mut blanks = String::new();
        while let Some(&c) = chars.peek() {
            if c == ' ' || c == '\t' {
                blanks.push(c);
                chars.next();
            } else {
                break;
            }
        }
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated quoted field {}", fields.len() + 1)),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            while chars.next_if(|&c| c == ' ' || c == '\t').is_some() {}
            fields.push(field);
            match chars.next() {
                None => return Ok(fields),
                Some(',') => continue,
                Some(_) => {
                    return Err(format!(
                        "text after the closing quote of field {}",
                        fields.len()
                    ));
                }
            }
        }
        field.push_str(&blanks);
        loop {
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {
                    fields.push(field);
                    break;
                }
                Some('"') => {
                    return Err(format!(
                        "quote inside unquoted field {} (quote the whole field)",
                        fields.len() + 1
                    ));
                }
                Some(c) => field.push(c),
            }
        }
    }
}

/// Puts back together a PHC hash written unquoted in the password field: its parameters
/// (`$m=19456,t=2,p=1$...`) contain commas, so the line splits them into separate fields, each
/// of the form `name=value`, which neither a quota nor a shard ever has.
fn rejoin_phc(mut fields: Vec<String>) -> Vec<String> {
    let is_param = |f: &str| {
        f.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
    };
    if fields.len() <= 2 || !fields[1].starts_with('$') {
        return fields;
    }
    while fields.len() > 2 && is_param(&fields[2]) {
        let next = fields.remove(2);
        fields[1].push(',');
        fields[1].push_str(&next);
    }
    fields
}

/// An argon2id PHC string with its parameters, salt and hash output: `is_argon2id_hash` alone
/// also accepts a bare `$argon2id$salt`, which no password would ever match.
fn is_complete_argon2id_hash(value: &str) -> bool {
    is_argon2id_hash(value)
        && argon2::PasswordHash::new(value).is_ok_and(|h| {
            h.salt.is_some()
                && h.hash.is_some_and(|out| out.len() >= 16)
                && argon2::Params::try_from(&h).is_ok()
        })
}

/// A password field: an argon2id hash kept as is, or a plaintext to hash.
fn password_field(value: &str) -> Result<Password, String> {
    if value.is_empty() {
        return Err("empty password".into());
    }
    if value.starts_with("$argon2id$") {
        return if is_complete_argon2id_hash(value) {
            Ok(Password::Hash(value.to_string()))
        } else {
            Err("malformed argon2id hash".into())
        };
    }
    // `$2y$...`, `$6$...`, `$argon2i$...`: a hash of another scheme would otherwise become the
    // plaintext password, silently locking the user out.
    if let Some((scheme, tail)) = value.strip_prefix('$').and_then(|r| r.split_once('$')) {
        let looks_like_scheme = !scheme.is_empty()
            && scheme.len() <= 16
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && tail.len() >= 8;
        if looks_like_scheme {
            return Err(format!(
                "password looks like a ${scheme}$ hash; only argon2id hashes can be imported"
            ));
        }
    }
    Ok(Password::Plain(value.to_string()))
}

impl Importer {
    fn report(&mut self, line: u64, problem: &str) {
        self.stats.bad += 1;
        self.progress
            .suspend(|| eprintln!("line {line}: {problem}"));
    }

    /// Checks one line; `Ok(None)` when there is nothing to create (an existing account with
    /// `--skip-existing`).
    async fn check(&mut self, raw: RawLine) -> Result<Option<Pending>, LineError> {
        let fields = rejoin_phc(raw.fields.map_err(LineError::Bad)?);
        if fields.len() != 3 && fields.len() != 4 {
            return Err(LineError::Bad(format!(
                "expected address,password,quota[,shard], found {} fields",
                fields.len()
            )));
        }
        let address = normalize_address(&fields[0]).map_err(|e| LineError::Bad(message(e)))?;
        let password = password_field(&fields[1]).map_err(LineError::Bad)?;
        let quota = fields[2].trim();
        let quota_bytes = if quota.is_empty() {
            0
        } else {
            parse_size(quota).map_err(|e| LineError::Bad(e.to_string()))?
        };
        let shard = fields
            .get(3)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let domain = domain_of(&address).to_string();
        if !self.domain_exists(&domain).await? {
            return Err(LineError::Bad(message(StoreError::DomainNotFound(domain))));
        }
        self.load_domain(&domain).await?;
        match self.known.get(&address) {
            Some(None) if self.skip_existing => {
                self.stats.existing += 1;
                return Ok(None);
            }
            Some(None) => {
                return Err(LineError::Bad(message(StoreError::AccountExists(address))));
            }
            Some(Some(first)) => {
                return Err(LineError::Bad(format!(
                    "{address} already appears on line {first}"
                )));
            }
            None => {}
        }
        let shard = self
            .placer
            .place(&domain, shard.as_deref())
            .map_err(LineError::Bad)?;
        self.known.insert(address.clone(), Some(raw.line));
        Ok(Some(Pending {
            line: raw.line,
            address,
            password,
            quota_bytes,
            shard,
        }))
    }

    async fn domain_exists(&mut self, domain: &str) -> anyhow::Result<bool> {
        if let Some(&exists) = self.domains.get(domain) {
            return Ok(exists);
        }
        let exists = self.store.domain_exists(domain).await.map_err(store_err)?;
        self.domains.insert(domain.to_string(), exists);
        Ok(exists)
    }

    /// Learns the existing accounts of a domain (for duplicates and for domain placement).
    async fn load_domain(&mut self, domain: &str) -> anyhow::Result<()> {
        if !self.loaded.insert(domain.to_string()) {
            return Ok(());
        }
        let mut per_shard: HashMap<String, i64> = HashMap::new();
        for a in self
            .store
            .list_accounts(Some(domain))
            .await
            .map_err(store_err)?
        {
            *per_shard.entry(a.shard).or_default() += 1;
            self.known.insert(a.address, None);
        }
        self.placer.mark_domain_known(domain);
        for (shard, n) in per_shard {
            self.placer.note_existing(domain, &shard, n);
        }
        Ok(())
    }

    /// Forgets a line that was not created, so a later line may use its address.
    fn drop_pending(&mut self, line: u64, address: &str, shard: &str) {
        if self.known.get(address) == Some(&Some(line)) {
            self.known.remove(address);
        }
        self.placer.unplace(domain_of(address), shard);
    }

    /// Starts committing a batch, first waiting for one to finish if enough are under way.
    async fn commit(&mut self, batch: Vec<Pending>) -> anyhow::Result<()> {
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            self.collect_one().await?;
        }
        self.in_flight
            .spawn(commit_batch(self.store.clone(), batch));
        Ok(())
    }

    /// Takes in the outcome of one finished batch.
    async fn collect_one(&mut self) -> anyhow::Result<()> {
        let outcome = match self.in_flight.join_next().await {
            None => return Ok(()),
            Some(Ok(o)) => o,
            Some(Err(e)) => anyhow::bail!("an import task failed: {e}"),
        };
        self.stats.imported += outcome.imported;
        for r in outcome.rejected {
            self.drop_pending(r.line, &r.address, &r.shard);
            self.report(r.line, &r.problem);
        }
        match outcome.fatal {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Waits for every batch under way; returns the first failure after all have ended.
    async fn finish(&mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        while !self.in_flight.is_empty() {
            if let Err(e) = self.collect_one().await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Batches committed at the same time (PostgreSQL gains from it; SQLite has one writer).
const MAX_IN_FLIGHT: usize = 4;

/// A line of a batch that was not created.
struct Rejected {
    line: u64,
    address: String,
    shard: String,
    problem: String,
}

/// What committing one batch did.
struct BatchOutcome {
    imported: u64,
    rejected: Vec<Rejected>,
    /// A failure of the store itself (not of one account): the import stops.
    fatal: Option<anyhow::Error>,
}

/// Hashes a batch's plaintext passwords on every core and creates its accounts, all or none;
/// if that fails, creates them one by one so that only the bad ones are left out.
async fn commit_batch(store: Arc<dyn Store>, batch: Vec<Pending>) -> BatchOutcome {
    let mut outcome = BatchOutcome {
        imported: 0,
        rejected: Vec::new(),
        fatal: None,
    };
    let hashed = tokio::task::spawn_blocking(move || {
        batch
            .into_par_iter()
            .map(|p| {
                let hash = match &p.password {
                    Password::Hash(h) => Ok(h.clone()),
                    Password::Plain(pw) => hash_password(pw).map_err(message),
                };
                (p, hash)
            })
            .collect::<Vec<(Pending, Result<String, String>)>>()
    })
    .await;
    let hashed = match hashed {
        Ok(h) => h,
        Err(e) => {
            outcome.fatal = Some(anyhow::anyhow!("password hashing task failed: {e}"));
            return outcome;
        }
    };
    let mut lines = Vec::with_capacity(hashed.len());
    let mut accounts = Vec::with_capacity(hashed.len());
    for (p, hash) in hashed {
        match hash {
            Ok(password_hash) => {
                lines.push(p.line);
                accounts.push(NewAccount {
                    address: p.address,
                    password_hash,
                    quota_bytes: p.quota_bytes,
                    shard: p.shard,
                });
            }
            Err(problem) => outcome.rejected.push(Rejected {
                line: p.line,
                address: p.address,
                shard: p.shard,
                problem,
            }),
        }
    }
    if accounts.is_empty() {
        return outcome;
    }
    match store.create_accounts(&accounts).await {
        Ok(()) => {
            outcome.imported = accounts.len() as u64;
            return outcome;
        }
        // Possibly a passing failure: the retry one by one tells.
        Err(e) => tracing::debug!("batch insert failed, retrying line by line: {e}"),
    }
    for (line, account) in lines.into_iter().zip(accounts) {
        match store.create_accounts(std::slice::from_ref(&account)).await {
            Ok(()) => outcome.imported += 1,
            Err(e) if is_per_account(&e) => outcome.rejected.push(Rejected {
                line,
                address: account.address,
                shard: account.shard,
                problem: message(e),
            }),
            Err(e) => {
                outcome.fatal = Some(anyhow::anyhow!("line {line}: {}", message(e)));
                return outcome;
            }
        }
    }
    outcome
}

/// A store error as a line report.
fn message(e: StoreError) -> String {
    match e {
        StoreError::Invalid(m) => m,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
