//! Where new accounts go when no shard is named (seed 003, "account placement"): `random`,
//! `weighted` (random in proportion to the shards' weights), `least-used` (the shard with the
//! fewest accounts) or `domain` (the shard that already holds the domain's accounts, else a
//! weighted choice). The policy is the cluster setting `placement`; the default is `weighted`.
//!
//! A shard of weight 0 takes no new accounts under any policy (naming it with `--shard` still
//! works). When the store has no shard at all, a shard `default` is created on first use.

use std::collections::HashMap;

use clap::{Args, Subcommand, ValueEnum};
use mailfleet_store::{Shard, Store};
use rand::Rng;
use rand::rngs::StdRng;

use super::{StoreOpt, store_err};

/// The cluster setting that holds the policy.
pub const SETTING: &str = "placement";
/// The shard created when the store has none.
pub const DEFAULT_SHARD: &str = "default";
/// The policy when the setting is unset.
pub const DEFAULT_POLICY: Policy = Policy::Weighted;

/// The keys this module owns in the cluster settings: (key, default, meaning).
pub const KEYS: &[(&str, &str, &str)] = &[(
    SETTING,
    "weighted",
    "where new accounts without --shard go: random, weighted, least-used or domain",
)];

/// Checks a value for a key of this module; `None` if the key is not ours.
pub fn validate(key: &str, value: &str) -> Option<Result<(), String>> {
    if key != SETTING {
        return None;
    }
    Some(Policy::parse(value).map(|_| ()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Policy {
    Random,
    Weighted,
    LeastUsed,
    Domain,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Random => "random",
            Policy::Weighted => "weighted",
            Policy::LeastUsed => "least-used",
            Policy::Domain => "domain",
        }
    }

    pub fn parse(value: &str) -> Result<Policy, String> {
        match value.trim() {
            "random" => Ok(Policy::Random),
            "weighted" => Ok(Policy::Weighted),
            "least-used" => Ok(Policy::LeastUsed),
            "domain" => Ok(Policy::Domain),
            other => Err(format!(
                "placement {other:?}: expected random, weighted, least-used or domain"
            )),
        }
    }
}

#[derive(Debug, Clone)]
struct Load {
    name: String,
    weight: i64,
    accounts: i64,
}

/// Chooses home shards for new accounts, keeping its own counts up to date as it places them
/// (an import places thousands before any is committed).
pub struct Placer {
    policy: Policy,
    shards: Vec<Load>,
    /// Accounts per shard of each domain seen so far (for `domain`).
    domains: HashMap<String, HashMap<String, i64>>,
    rng: StdRng,
}

impl Placer {
    pub fn new(policy: Policy, shards: &[Shard], rng: StdRng) -> Self {
        let mut shards: Vec<Load> = shards
            .iter()
            .map(|s| Load {
                name: s.name.clone(),
                weight: s.weight,
                accounts: s.accounts,
            })
            .collect();
        shards.sort_by(|a, b| a.name.cmp(&b.name));
        Self {
            policy,
            shards,
            domains: HashMap::new(),
            rng,
        }
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    pub fn has_shard(&self, name: &str) -> bool {
        self.shards.iter().any(|s| s.name == name)
    }

    /// Tells the placer that `count` accounts of `domain` already live on `shard`.
    pub fn note_existing(&mut self, domain: &str, shard: &str, count: i64) {
        *self
            .domains
            .entry(domain.to_string())
            .or_default()
            .entry(shard.to_string())
            .or_default() += count;
    }

    /// Whether the placer already knows the accounts of `domain` (see [`Self::mark_domain_known`]).
    pub fn knows_domain(&self, domain: &str) -> bool {
        self.domains.contains_key(domain)
    }

    /// Records that `domain` has been looked up, even if it has no accounts yet.
    pub fn mark_domain_known(&mut self, domain: &str) {
        self.domains.entry(domain.to_string()).or_default();
    }

    /// The home shard for a new account of `domain`: `explicit` if given (it must exist), else
    /// the policy's choice. The choice is counted as placed.
    pub fn place(&mut self, domain: &str, explicit: Option<&str>) -> Result<String, String> {
        let name = match explicit {
            Some(name) => {
                if !self.has_shard(name) {
                    return Err(format!("shard not found: {name}"));
                }
                name.to_string()
            }
            None => self.choose(domain)?,
        };
        if let Some(s) = self.shards.iter_mut().find(|s| s.name == name) {
            s.accounts += 1;
        }
        self.note_existing(domain, &name, 1);
        Ok(name)
    }

    /// Takes back a placement whose account was not created after all.
    pub fn unplace(&mut self, domain: &str, shard: &str) {
        if let Some(s) = self.shards.iter_mut().find(|s| s.name == shard) {
            s.accounts -= 1;
        }
        if let Some(n) = self.domains.get_mut(domain).and_then(|d| d.get_mut(shard)) {
            *n -= 1;
        }
    }

    fn open_shards(&self) -> Result<Vec<usize>, String> {
        let open: Vec<usize> = (0..self.shards.len())
            .filter(|&i| self.shards[i].weight > 0)
            .collect();
        if open.is_empty() {
            return Err(if self.shards.is_empty() {
                "no shards: add one with `mailfleet shard add NAME`".to_string()
            } else {
                "no shard takes new accounts (every shard has weight 0)".to_string()
            });
        }
        Ok(open)
    }

    fn choose(&mut self, domain: &str) -> Result<String, String> {
        let open = self.open_shards()?;
        let i = match self.policy {
            Policy::Random => open[self.rng.gen_range(0..open.len())],
            Policy::Weighted => self.weighted(&open),
            Policy::LeastUsed => *open
                .iter()
                .min_by_key(|&&i| self.shards[i].accounts)
                .unwrap_or(&open[0]),
            Policy::Domain => match self.domain_home(domain) {
                Some(home) => return Ok(home),
                None => self.weighted(&open),
            },
        };
        Ok(self.shards[i].name.clone())
    }

    fn weighted(&mut self, open: &[usize]) -> usize {
        let total: i64 = open.iter().map(|&i| self.shards[i].weight).sum();
        let mut pick = self.rng.gen_range(0..total.max(1));
        for &i in open {
            let w = self.shards[i].weight;
            if pick < w {
                return i;
            }
            pick -= w;
        }
        open[open.len() - 1]
    }

    /// The shard holding most of the domain's accounts (ties: the first by name).
    fn domain_home(&self, domain: &str) -> Option<String> {
        let counts = self.domains.get(domain)?;
        let mut best: Option<(&String, i64)> = None;
        for (shard, &n) in counts {
            if n <= 0 || !self.has_shard(shard) {
                continue;
            }
            let better = match best {
                None => true,
                Some((b, bn)) => n > bn || (n == bn && shard < b),
            };
            if better {
                best = Some((shard, n));
            }
        }
        best.map(|(s, _)| s.clone())
    }
}

/// The policy set in the store, or the default.
pub async fn current_policy(store: &dyn Store) -> anyhow::Result<Policy> {
    match store.get_setting(SETTING).await.map_err(store_err)? {
        Some(s) => Policy::parse(&s.value).map_err(|e| anyhow::anyhow!("cluster setting {e}")),
        None => Ok(DEFAULT_POLICY),
    }
}

/// The store's shards, creating `default` if there are none.
pub async fn shards_or_default(store: &dyn Store) -> anyhow::Result<Vec<Shard>> {
    let shards = store.list_shards().await.map_err(store_err)?;
    if !shards.is_empty() {
        return Ok(shards);
    }
    store.put_shard(DEFAULT_SHARD, 1).await.map_err(store_err)?;
    store.list_shards().await.map_err(store_err)
}

/// A placer loaded with the store's policy and shards.
pub async fn load(store: &dyn Store) -> anyhow::Result<Placer> {
    let policy = current_policy(store).await?;
    let shards = shards_or_default(store).await?;
    Ok(Placer::new(
        policy,
        &shards,
        rand::SeedableRng::from_entropy(),
    ))
}

/// Teaches the placer where `domain`'s accounts live (once per domain).
pub async fn learn_domain(
    placer: &mut Placer,
    store: &dyn Store,
    domain: &str,
) -> anyhow::Result<()> {
    if placer.knows_domain(domain) {
        return Ok(());
    }
    placer.mark_domain_known(domain);
    if placer.policy() != Policy::Domain {
        return Ok(());
    }
    let mut counts: HashMap<String, i64> = HashMap::new();
    for a in store.list_accounts(Some(domain)).await.map_err(store_err)? {
        *counts.entry(a.shard).or_default() += 1;
    }
    for (shard, n) in counts {
        placer.note_existing(domain, &shard, n);
    }
    Ok(())
}

#[derive(Args)]
pub struct PlacementCmd {
    #[command(flatten)]
    store: StoreOpt,
    #[command(subcommand)]
    action: PlacementAction,
}

#[derive(Subcommand)]
enum PlacementAction {
    /// Set the policy for new accounts without --shard.
    Set {
        /// random, weighted (by shard weight), least-used (fewest accounts) or domain (the
        /// shard already holding the domain's accounts).
        policy: Policy,
    },
    /// Show the policy in force.
    Show,
}

pub async fn run(cmd: PlacementCmd) -> anyhow::Result<()> {
    let store = cmd.store.open().await?;
    match cmd.action {
        PlacementAction::Set { policy } => {
            store
                .set_setting(SETTING, policy.as_str())
                .await
                .map_err(store_err)?;
            println!("placement: {}", policy.as_str());
        }
        PlacementAction::Show => {
            let policy = current_policy(store.as_ref()).await?;
            println!("placement: {}", policy.as_str());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn shard(name: &str, weight: i64, accounts: i64) -> Shard {
        Shard {
            name: name.into(),
            weight,
            accounts,
        }
    }

    fn placer(policy: Policy, shards: &[Shard]) -> Placer {
        Placer::new(policy, shards, StdRng::seed_from_u64(7))
    }

    fn tally(p: &mut Placer, domain: &str, n: usize) -> HashMap<String, usize> {
        let mut t = HashMap::new();
        for _ in 0..n {
            *t.entry(p.place(domain, None).unwrap()).or_default() += 1;
        }
        t
    }

    #[test]
    fn least_used_fills_the_emptiest_first() {
        let mut p = placer(
            Policy::LeastUsed,
            &[shard("a", 1, 5), shard("b", 1, 0), shard("c", 1, 2)],
        );
        let picks: Vec<String> = (0..6).map(|_| p.place("x.test", None).unwrap()).collect();
        // b catches up with c at 2, then the two alternate (ties go by name) up to 4.
        assert_eq!(picks, ["b", "b", "b", "c", "b", "c"]);
        // Both reach a's 5, then all three tie.
        let picks: Vec<String> = (0..3).map(|_| p.place("x.test", None).unwrap()).collect();
        assert_eq!(picks, ["b", "c", "a"]);
    }

    #[test]
    fn weighted_follows_weights_and_skips_zero() {
        let mut p = placer(
            Policy::Weighted,
            &[shard("a", 1, 0), shard("b", 3, 0), shard("z", 0, 0)],
        );
        let t = tally(&mut p, "x.test", 4000);
        assert_eq!(t.get("z"), None);
        let a = t["a"] as f64;
        let b = t["b"] as f64;
        assert!((2.6..3.4).contains(&(b / a)), "a={a} b={b}");
    }

    #[test]
    fn random_uses_every_open_shard_evenly() {
        let mut p = placer(
            Policy::Random,
            &[shard("a", 1, 0), shard("b", 100, 0), shard("c", 0, 0)],
        );
        let t = tally(&mut p, "x.test", 2000);
        assert_eq!(t.get("c"), None);
        assert!(t["a"] > 850 && t["b"] > 850, "{t:?}");
    }

    #[test]
    fn domain_keeps_a_domain_together() {
        let mut p = placer(
            Policy::Domain,
            &[shard("a", 1, 0), shard("b", 1, 0), shard("c", 1, 0)],
        );
        let mut homes = HashMap::new();
        for d in 0..30 {
            let domain = format!("d{d}.test");
            let first = p.place(&domain, None).unwrap();
            for _ in 0..5 {
                assert_eq!(p.place(&domain, None).unwrap(), first);
            }
            homes.insert(domain, first);
        }
        // Different domains spread over the shards.
        let distinct: std::collections::HashSet<_> = homes.values().collect();
        assert!(distinct.len() > 1);
    }

    #[test]
    fn domain_follows_existing_accounts() {
        let mut p = placer(Policy::Domain, &[shard("a", 1, 10), shard("b", 1, 3)]);
        p.note_existing("x.test", "b", 3);
        p.note_existing("x.test", "a", 1);
        for _ in 0..10 {
            assert_eq!(p.place("x.test", None).unwrap(), "b");
        }
    }

    #[test]
    fn explicit_shard_must_exist_and_is_counted() {
        let mut p = placer(Policy::LeastUsed, &[shard("a", 1, 0), shard("b", 0, 0)]);
        assert_eq!(
            p.place("x.test", Some("nope")).unwrap_err(),
            "shard not found: nope"
        );
        // A closed shard can still be named.
        assert_eq!(p.place("x.test", Some("b")).unwrap(), "b");
        assert_eq!(p.place("x.test", None).unwrap(), "a");
        p.unplace("x.test", "a");
        assert_eq!(p.place("x.test", None).unwrap(), "a");
    }

    #[test]
    fn no_open_shard_is_an_error() {
        let mut p = placer(Policy::Weighted, &[shard("a", 0, 0)]);
        assert!(p.place("x.test", None).unwrap_err().contains("weight 0"));
        let mut p = placer(Policy::Random, &[]);
        assert!(p.place("x.test", None).unwrap_err().contains("no shards"));
    }

    #[test]
    fn policy_setting_is_validated() {
        assert_eq!(validate("placement", "least-used"), Some(Ok(())));
        assert!(matches!(validate("placement", "roundrobin"), Some(Err(_))));
        assert_eq!(validate("smtp.max_recipients", "5"), None);
    }
}
