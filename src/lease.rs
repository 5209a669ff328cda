//! Leases: a pass's claim on the groups it is about to change, so that two passes running at
//! once (the CLI beside the Lambda, two invocations after a deploy) never change one group
//! together: never two clones launched for one instance, one instance attached twice, or
//! desired capacity and MaxSize left raised (README, "Overlapping passes").
//!
//! A lease is the group tag `spotswap:lease` ([`crate::protocol::Lease`]). Auto Scaling has no
//! conditional write, so a pass takes its leases in four steps, for all the groups its plan
//! acts on at once: it reads the tag again (one `DescribeTags` per 100 groups) and keeps only
//! the groups whose tag is still what its snapshot showed (no other pass has been at the group
//! since it read it); writes its own value (`CreateOrUpdateTags`, 50 groups a call); waits
//! [`SETTLE`]; and reads the tags back. It holds the groups that still show its value. Two
//! passes can both see their own value only if one of them took longer than [`SETTLE`] between
//! its read and the end of its write, so a pass that did holds nothing (its value stays until
//! it ends, so no third pass steps in meanwhile). A lease lasts `lease-seconds` plus
//! `operation-timeout-seconds`, and its holder sends no change after the first `lease-seconds`
//! (`crate::pacing::Pacer::stop_writes_at`), so none of its calls lands after another pass may
//! have taken the group over. It releases its leases when done; one that dies holding them
//! delays its groups until they end.
//!
//! This module makes the calls and says which groups are held; it decides nothing about the
//! groups themselves (the planner does) and never logs (the pass does).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::cloud::{Actuator, CloudError, Inventory};
use crate::model::Snapshot;
use crate::protocol::{self, Lease};

/// How long a pass waits between writing its leases and reading them back; also the longest it
/// may take from its fresh read to the end of its write, or it holds nothing this pass. Auto
/// Scaling's calls answer in tens of milliseconds, so a second leaves room for a retry.
pub const SETTLE: Duration = Duration::from_secs(1);

/// The leases a pass took: the groups it holds, and why it does not hold the others.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Leases {
    /// Who this pass is, in the tag.
    pub holder: String,
    /// The groups this pass holds and may change.
    pub held: BTreeSet<String>,
    /// The groups it may not change this pass, each with why.
    pub lost: BTreeMap<String, String>,
    /// The groups whose leases it did not try to take: its deadline had passed, so their
    /// actions wait for the next pass.
    pub deferred: BTreeSet<String>,
}

impl Leases {
    fn lose_all(&mut self, groups: impl IntoIterator<Item = String>, why: &str) {
        for g in groups {
            self.held.remove(&g);
            self.lost.insert(g, why.to_string());
        }
    }
}

/// A holder name for a pass: its pass id and a random suffix, so that two passes that share a
/// pass id (two Lambda containers started in the same second with the same process id) are
/// still told apart.
pub fn holder(pass_id: &str) -> String {
    use std::hash::{BuildHasher, RandomState};
    let nonce = RandomState::new().hash_one(std::time::Instant::now()) & 0xff_ffff;
    format!("{pass_id}.{nonce:06x}")
}

/// Takes the leases of `groups` (names in `snapshot`, which the plan was made from) for
/// `holder`, until `now + length`. `now` is the wall-clock time of the first read.
pub async fn acquire<C: Inventory + Actuator>(
    cloud: &C,
    snapshot: &Snapshot,
    groups: &[String],
    holder: &str,
    now: DateTime<Utc>,
    length: Duration,
) -> Leases {
    let until = now + chrono::Duration::from_std(length).unwrap_or(chrono::Duration::zero());
    let value = Lease::held(holder, until).value();
    let mut leases = Leases {
        holder: holder.to_string(),
        ..Leases::default()
    };
    if groups.is_empty() {
        return leases;
    }
    let read_at = tokio::time::Instant::now();
    let current = match cloud.group_tags(groups, protocol::LEASE).await {
        Ok(c) => c,
        Err(e) => {
            leases.lose_all(groups.iter().cloned(), &not_read(&e));
            return leases;
        }
    };
    // Still as the snapshot showed it: no other pass has taken or released the group since.
    let mut writes = BTreeMap::new();
    for g in groups {
        let seen = snapshot
            .groups
            .iter()
            .find(|s| &s.name == g)
            .and_then(|s| s.tags.get(protocol::LEASE));
        match (seen, current.get(g)) {
            (a, b) if a == b => {
                writes.insert(g.clone(), value.clone());
            }
            (_, now) => {
                let why = format!(
                    "another pass has been at the group since this pass read it ({} is now {})",
                    protocol::LEASE,
                    now.map_or("absent", String::as_str)
                );
                leases.lost.insert(g.clone(), why);
            }
        }
    }
    if writes.is_empty() {
        return leases;
    }
    if let Err(e) = cloud.tag_groups(protocol::LEASE, &writes).await {
        let why = format!("could not write the lease: {e}");
        leases.lose_all(writes.into_keys(), &why);
        return leases;
    }
    let took = read_at.elapsed();
    if took > SETTLE {
        let why = format!(
            "the lease was written {:.1} s after it was read, more than the {} s that make it safe \
             (the next pass tries again)",
            took.as_secs_f64(),
            SETTLE.as_secs()
        );
        leases.lose_all(writes.into_keys(), &why);
        return leases;
    }
    tokio::time::sleep(SETTLE).await;
    let names: Vec<String> = writes.into_keys().collect();
    match cloud.group_tags(&names, protocol::LEASE).await {
        Ok(back) => {
            for g in names {
                match back.get(&g) {
                    Some(v) if *v == value => {
                        leases.held.insert(g);
                    }
                    other => {
                        let why = format!(
                            "another pass took the lease ({} is {})",
                            protocol::LEASE,
                            other.map_or("absent", String::as_str)
                        );
                        leases.lost.insert(g, why);
                    }
                }
            }
        }
        Err(e) => leases.lose_all(names, &not_read(&e)),
    }
    leases
}

fn not_read(e: &CloudError) -> String {
    format!("could not read the lease: {e}")
}

/// Gives back the leases held (`HOLDER released`), so the next pass need not wait for them to
/// end, except on the groups in `unfinished`: a pass that leaves a swap there in doubt lets its
/// lease end by itself, so the next pass reads the group's scaling activities and settles the
/// swap (`src/plan/settle.rs`), as after a crash. A failure leaves them all to end by
/// themselves.
pub async fn release<C: Actuator>(
    cloud: &C,
    leases: &Leases,
    unfinished: &BTreeSet<String>,
) -> Result<(), CloudError> {
    let released = Lease::released(&leases.holder).value();
    let values: BTreeMap<String, String> = leases
        .held
        .iter()
        .filter(|g| !unfinished.contains(*g))
        .map(|g| (g.clone(), released.clone()))
        .collect();
    if values.is_empty() {
        return Ok(());
    }
    cloud.tag_groups(protocol::LEASE, &values).await
}
