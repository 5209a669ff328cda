//! The swap protocol's state, as it lives in tags: every tag key spotswap reads or writes, the
//! codecs of their values, and the tags a clone is launched with.
//!
//! A Lambda remembers nothing between runs and may stop at any point, so every step of a swap
//! is recorded on AWS resources and every pass re-derives what to do from what it sees (README,
//! "How it decides"). The tag names are a public contract: renaming one strands the swaps in
//! flight. This module only names and encodes; it decides nothing, and it is pure (no I/O, no
//! clock, no logging).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Group, Instance, LaunchRef, LaunchSpec};

/// On a clone: the name of the group it was launched for.
pub const GROUP: &str = "spotswap:group";
/// On a clone: the id of the on-demand instance it replaces. A clone is launched with it empty
/// (one fleet launches a batch, and a launch call gives every instance the same tags); it is
/// paired with an on-demand instance of its group and AZ just before it is attached.
pub const REPLACES: &str = "spotswap:replaces";
/// On a launch template spotswap created for a launch configuration: the configuration's name.
pub const LAUNCH_CONFIGURATION: &str = "spotswap:launch-configuration";
/// On a group: its MaxSize before spotswap raised it by one around a swap.
pub const MAX_SIZE: &str = "spotswap:max-size";
/// On a group: the spot pools (type and AZ) that recently interrupted its instances or had no
/// capacity for its clones, as space-separated `TYPE@AZ@RFC3339` entries (an interruption) and
/// `TYPE@AZ@RFC3339@no-capacity` entries (a capacity error at launch).
pub const INTERRUPTED: &str = "spotswap:interrupted";
/// On a group: its clones keep dying before they are swapped in, so its launches back off
/// (see [`LaunchBackoff`]).
pub const LAUNCH_BACKOFF: &str = "spotswap:launch-backoff";
/// On a group: which pass may change it, and until when (see [`Lease`]).
pub const LEASE: &str = "spotswap:lease";
/// On a group: for each clone whose attach a pass balances by taking out another member (both
/// the clone and the instance it replaced had left the group another way), that member, as
/// space-separated `CLONE>MEMBER` entries, newest last (see [`settled`]).
pub const SETTLED: &str = "spotswap:settled";
/// On a clone attached to a group behind load balancers: when it was attached (RFC 3339),
/// written with its pairing just before the attach. The instance it replaces leaves once the
/// clone is healthy behind every load balancer; past the group's `healthy-timeout-minutes`
/// from this time, the swap is undone.
pub const ATTACHED: &str = "spotswap:attached";
/// On a clone: what it was launched from, `lt:ID:VERSION` (the template version resolved) or
/// `lc:NAME:HASH` (a hash of the configuration's content; see [`launch_identity`]). A clone
/// whose group launches from something else by the time it could be attached is never
/// attached: the group would run an instance of a spec it no longer has (orphan `drifted`).
pub const LAUNCHED_FROM: &str = "spotswap:launched-from";
/// How many entries `spotswap:settled` keeps: a settled attach stays in the scaling activities
/// a pass reads for an hour, and this many fit a tag value (256 characters).
pub const SETTLED_KEPT: usize = 6;
/// Every tag the protocol itself writes; none of them is a setting.
pub const PROTOCOL_TAGS: [&str; 10] = [
    GROUP,
    REPLACES,
    ATTACHED,
    LAUNCHED_FROM,
    MAX_SIZE,
    INTERRUPTED,
    LAUNCH_BACKOFF,
    LAUNCH_CONFIGURATION,
    LEASE,
    SETTLED,
];
/// The state reason EC2 gives an instance terminated by a `TerminateInstances` call (a person,
/// or spotswap's own clean-up): someone's decision, not a launch that failed (EC2 API
/// reference, `StateReason`).
pub const USER_INITIATED_SHUTDOWN: &str = "Client.UserInitiatedShutdown";
/// The prefix of every per-group setting tag (`spotswap:min-on-demand-number`, ...).
pub const SETTING_PREFIX: &str = "spotswap:";
/// Tag keys with this prefix are reserved by AWS and can never be set by a caller (EC2 User
/// Guide, "Tag restrictions"), so they are never copied to a clone.
pub const AWS_RESERVED_PREFIX: &str = "aws:";
/// AWS caps a tag value at 256 Unicode characters (EC2 User Guide, "Tag restrictions").
pub const TAG_VALUE_MAX: usize = 256;
/// An EC2 resource carries at most 50 user tags; `aws:` tags do not count (EC2 User Guide,
/// "Tag restrictions"). A launch asking for more fails.
pub const TAGS_PER_RESOURCE_MAX: usize = 50;

/// For a spotswap clone: the group it was launched for and the instance it replaces, empty
/// while the clone is not paired yet.
pub fn clone_of(instance: &Instance) -> Option<(&str, &str)> {
    let group = instance.tags.get(GROUP)?;
    let replaces = instance.tags.get(REPLACES).map_or("", String::as_str);
    Some((group.as_str(), replaces))
}

/// Whether a clone has been paired with the instance it replaces.
pub fn is_paired(clone: &Instance) -> bool {
    clone_of(clone).is_some_and(|(_, r)| !r.is_empty())
}

/// The tags a clone is launched with, whatever it will replace: the group's propagated tags
/// and the protocol's, `spotswap:replaces` empty. Within EC2's limit, with the keys left out.
pub fn launch_tags(group: &Group) -> (BTreeMap<String, String>, Vec<String>) {
    clone_tags_within_limit(group, None)
}

/// The tags that pair a clone with the instance it replaces, written just before the attach:
/// `spotswap:replaces` and the replaced instance's own tags, as a clone launched for it alone
/// would carry them, less those the clone already has; and the keys left out so that the clone
/// ends with at most 50 user tags (`spotswap:replaces` first, then `Name`, then key order).
pub fn pair_tags(
    group: &Group,
    clone: &Instance,
    replaced: &Instance,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut new: Vec<(String, String)> = clone_tags(group, Some(replaced))
        .into_iter()
        .filter(|(k, v)| clone.tags.get(k) != Some(v))
        .collect();
    let rank = |k: &str| match k {
        REPLACES => 0,
        "Name" => 1,
        _ => 2,
    };
    new.sort_by(|(a, _), (b, _)| rank(a).cmp(&rank(b)).then(a.cmp(b)));
    let user = |k: &String| !k.starts_with(AWS_RESERVED_PREFIX);
    let mut count = clone.tags.keys().filter(|k| user(k)).count();
    let (mut kept, mut left_out) = (BTreeMap::new(), Vec::new());
    for (k, v) in new {
        // A key the clone has already (with another value) is replaced, not added.
        let adds = !clone.tags.contains_key(&k);
        if adds && count >= TAGS_PER_RESOURCE_MAX {
            left_out.push(k);
            continue;
        }
        count += usize::from(adds);
        kept.insert(k, v);
    }
    left_out.sort();
    (kept, left_out)
}

/// FNV-1a, 64 bits: a hash stable across builds and platforms, unlike std's hasher, for names
/// and tokens that must come out the same in every pass.
pub fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A hash of everything a launch spec launches with (user data included: it is hashed, never
/// shown), stable across builds: two specs with the same hash launch the same instance.
pub fn spec_hash(spec: &LaunchSpec) -> u64 {
    stable_hash(&serde_json::to_string(spec).unwrap_or_default())
}

/// What a clone of `spec`, read through `launch`, is launched from: `lt:ID:VERSION` with the
/// version resolved, or `lc:NAME:HASH` for a launch configuration (its content: a
/// configuration deleted and created again under the same name with another AMI or user data
/// is another one).
pub fn launch_identity(launch: &LaunchRef, spec: &LaunchSpec) -> String {
    match launch {
        LaunchRef::LaunchTemplate { id, version, .. } => {
            let version = spec
                .resolved_version
                .map_or_else(|| version.clone(), |v| v.to_string());
            format!("lt:{id}:{version}")
        }
        LaunchRef::LaunchConfiguration { name } => {
            format!("lc:{name}:{:016x}", spec_hash(spec))
        }
    }
}

/// The name of the launch template spotswap keeps for a launch configuration: readable, within
/// the characters and length EC2 allows a template name (3 to 128 of `a-zA-Z0-9().-/_`; EC2 API
/// reference, CreateLaunchTemplate), and unique per configuration content by a hash of its name
/// and spec, so a configuration created again under the same name gets a template of its own.
pub fn owned_template_name(launch_configuration: &str, spec: &LaunchSpec) -> String {
    let hash = stable_hash(&format!("{launch_configuration}\n{:016x}", spec_hash(spec)));
    let readable: String = launch_configuration
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "().-/_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    format!("spotswap-lc-{readable}-{hash:016x}")
}

/// Adds `spotswap:launched-from` to a clone's launch tags; past EC2's 50 user tags, the last
/// tag other than the protocol's and `Name` is left out for it (and named in `left_out`).
pub fn add_launch_identity(
    tags: &mut BTreeMap<String, String>,
    left_out: &mut Vec<String>,
    identity: &str,
) {
    tags.insert(LAUNCHED_FROM.to_string(), identity.to_string());
    let user = |k: &String| !k.starts_with(AWS_RESERVED_PREFIX);
    if tags.keys().filter(|k| user(k)).count() > TAGS_PER_RESOURCE_MAX {
        let drop = tags
            .keys()
            .rev()
            .find(|k| user(k) && !PROTOCOL_TAGS.contains(&k.as_str()) && *k != "Name")
            .cloned();
        if let Some(k) = drop {
            tags.remove(&k);
            left_out.push(k);
            left_out.sort();
        }
    }
}

/// The tags a clone is launched with, and the keys left out to stay within EC2's limit of 50.
///
/// They are the group's propagated tags, then the replaced instance's own tags (never `aws:`
/// keys, which AWS reserves, and never the protocol tags of the replaced instance), then the
/// two protocol tags, which always win. Past 50 tags, the protocol tags are kept first, then
/// `Name`, then the others in key order; the rest are left out and named.
pub fn clone_tags_within_limit(
    group: &Group,
    replaced: Option<&Instance>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut all = clone_tags(group, replaced);
    if all.len() <= TAGS_PER_RESOURCE_MAX {
        return (all, Vec::new());
    }
    let mut order: Vec<String> = all.keys().cloned().collect();
    let rank = |k: &str| match k {
        GROUP | REPLACES => 0,
        "Name" => 1,
        _ => 2,
    };
    order.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
    let dropped: Vec<String> = order.split_off(TAGS_PER_RESOURCE_MAX);
    for k in &dropped {
        all.remove(k);
    }
    (all, dropped)
}

/// Every tag a clone would carry, before EC2's limit: see [`clone_tags_within_limit`].
pub fn clone_tags(group: &Group, replaced: Option<&Instance>) -> BTreeMap<String, String> {
    let usable = |k: &str| {
        !k.starts_with(AWS_RESERVED_PREFIX)
            && ![GROUP, REPLACES, ATTACHED, LAUNCHED_FROM].contains(&k)
    };
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for k in &group.propagated_tag_keys {
        if let Some(v) = group.tags.get(k)
            && usable(k)
        {
            out.insert(k.clone(), v.clone());
        }
    }
    if let Some(i) = replaced {
        for (k, v) in &i.tags {
            if usable(k) {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    let replaces = replaced.map_or("", |i| i.instance_id.as_str());
    out.insert(GROUP.into(), group.name.clone());
    out.insert(REPLACES.into(), replaces.into());
    out
}

/// Reads `spotswap:max-size`: `Ok(None)` when absent, `Err` with the value when unreadable.
pub fn max_size(tags: &BTreeMap<String, String>) -> Result<Option<u32>, String> {
    match tags.get(MAX_SIZE) {
        None => Ok(None),
        Some(v) => v.trim().parse::<u32>().map(Some).map_err(|_| v.clone()),
    }
}

/// The value `spotswap:max-size` records.
pub fn max_size_value(original: u32) -> String {
    original.to_string()
}

/// `spotswap:launch-backoff`: how many times in a row the group's clones died before they
/// were swapped in, until when its launches wait, and the last clone that died, with why.
/// The value reads `failures=N until=RFC3339 clone=ID launched=RFC3339 reason=WORD`;
/// `launched` is that clone's launch time, so a clone already counted is not counted again
/// while EC2 still lists it (terminated instances stay visible for about an hour).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchBackoff {
    pub failures: u32,
    pub until: DateTime<Utc>,
    pub clone: String,
    pub launched: DateTime<Utc>,
    /// EC2's state reason code (`Client.InternalError`, `Server.SpotInstanceTermination`),
    /// or how spotswap found the clone stuck (`timeout`, `not-running`).
    pub reason: String,
}

impl LaunchBackoff {
    /// The tag value; the reason is cut so the value stays within AWS's 256 characters.
    pub fn value(&self) -> String {
        let secs = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        let head = format!(
            "failures={} until={} clone={} launched={} reason=",
            self.failures,
            secs(&self.until),
            self.clone,
            secs(&self.launched)
        );
        let room = TAG_VALUE_MAX.saturating_sub(head.chars().count());
        let reason: String = self
            .reason
            .chars()
            .filter(|c| !c.is_whitespace())
            .take(room)
            .collect();
        head + &reason
    }
}

/// Reads `spotswap:launch-backoff`: `Ok(None)` when absent, `Err` with the value when
/// unreadable.
pub fn launch_backoff(tags: &BTreeMap<String, String>) -> Result<Option<LaunchBackoff>, String> {
    let Some(v) = tags.get(LAUNCH_BACKOFF) else {
        return Ok(None);
    };
    let fields: BTreeMap<&str, &str> = v
        .split_whitespace()
        .filter_map(|f| f.split_once('='))
        .collect();
    let time = |k: &str| {
        fields
            .get(k)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let parsed = (|| {
        Some(LaunchBackoff {
            failures: fields.get("failures")?.parse().ok().filter(|n| *n > 0)?,
            until: time("until")?,
            clone: fields.get("clone")?.to_string(),
            launched: time("launched")?,
            reason: fields.get("reason").unwrap_or(&"").to_string(),
        })
    })();
    parsed.map(Some).ok_or_else(|| v.clone())
}

/// `spotswap:lease`: a pass's claim on a group, so that two passes running at once (the CLI
/// beside the Lambda, two invocations after a deploy) never change one group together. The
/// value reads `HOLDER until RFC3339` while held and `HOLDER released` once the holder is done;
/// a released lease keeps its holder, so every value a pass writes is new and a pass can tell
/// that another has been at the group since it read it (ARCHITECTURE.md, "The swap protocol as
/// a state machine").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The pass that wrote it: its pass id and a random suffix.
    pub holder: String,
    /// Until when it holds; `None` once released.
    pub until: Option<DateTime<Utc>>,
}

impl Lease {
    /// A lease `holder` holds until `until`.
    pub fn held(holder: &str, until: DateTime<Utc>) -> Self {
        Lease {
            holder: holder.to_string(),
            until: Some(until),
        }
    }

    /// `holder`'s lease, given back.
    pub fn released(holder: &str) -> Self {
        Lease {
            holder: holder.to_string(),
            until: None,
        }
    }

    /// Whether it still holds at `now`.
    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    /// Whether it ended at `now` without being released: its pass stopped before the end (a
    /// crash, a timeout) or left something unfinished on the group, so a swap may be in doubt.
    pub fn abandoned_at(&self, now: DateTime<Utc>) -> bool {
        self.until.is_some_and(|u| now >= u)
    }

    /// The tag value.
    pub fn value(&self) -> String {
        match self.until {
            Some(u) => format!(
                "{} until {}",
                self.holder,
                u.to_rfc3339_opts(SecondsFormat::Millis, true)
            ),
            None => format!("{} released", self.holder),
        }
    }
}

/// How far back a pass reads the scaling activities of a group whose lease was abandoned: EC2
/// lists a terminated clone for about an hour (EC2 User Guide, "Terminate Amazon EC2
/// instances"), so an older attach could not be paired with the instance it replaced anyway.
pub const ACTIVITY_LOOKBACK_MINUTES: i64 = 60;

/// Whether a swap on a group with these tags may be in doubt at `now`: its lease was abandoned
/// (see [`Lease::abandoned_at`]). An unreadable lease is not: such a group is left alone
/// whole (`invalid-protocol-tag`).
pub fn in_doubt(tags: &BTreeMap<String, String>, now: DateTime<Utc>) -> bool {
    lease(tags).is_ok_and(|l| l.is_some_and(|l| l.abandoned_at(now)))
}

/// Reads `spotswap:settled`: (clone, the member taken out for its attach) pairs; `Err` with the
/// value when unreadable.
pub fn settled(tags: &BTreeMap<String, String>) -> Result<Vec<(String, String)>, String> {
    let Some(v) = tags.get(SETTLED) else {
        return Ok(Vec::new());
    };
    v.split_whitespace()
        .map(|entry| {
            entry
                .split_once('>')
                .filter(|(c, m)| looks_like_instance(c) && looks_like_instance(m))
                .map(|(c, m)| (c.to_string(), m.to_string()))
                .ok_or_else(|| v.clone())
        })
        .collect()
}

/// `spotswap:settled` with `member` recorded for `clone` (in place of any earlier entry for
/// it), keeping the newest [`SETTLED_KEPT`].
pub fn settled_value(kept: &[(String, String)], clone: &str, member: &str) -> String {
    let mut entries: Vec<String> = kept
        .iter()
        .filter(|(c, _)| c != clone)
        .map(|(c, m)| format!("{c}>{m}"))
        .collect();
    entries.push(format!("{clone}>{member}"));
    let skip = entries.len().saturating_sub(SETTLED_KEPT);
    entries[skip..].join(" ")
}

fn looks_like_instance(id: &str) -> bool {
    id.strip_prefix("i-").is_some_and(|hex| {
        !hex.is_empty() && hex.len() <= 17 && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Reads `spotswap:lease`: `Ok(None)` when absent, `Err` with the value when unreadable.
pub fn lease(tags: &BTreeMap<String, String>) -> Result<Option<Lease>, String> {
    let Some(v) = tags.get(LEASE) else {
        return Ok(None);
    };
    let words: Vec<&str> = v.split_whitespace().collect();
    match words[..] {
        [holder, "released"] => Ok(Some(Lease::released(holder))),
        [holder, "until", at] => DateTime::parse_from_rfc3339(at)
            .map(|t| Some(Lease::held(holder, t.with_timezone(&Utc))))
            .map_err(|_| v.clone()),
        _ => Err(v.clone()),
    }
}

/// What went wrong in a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolTrouble {
    /// It interrupted one of the group's spot instances.
    #[default]
    Interrupted,
    /// It had no capacity for a clone (InsufficientInstanceCapacity and its kin).
    NoCapacity,
}

/// The suffix of a capacity error's entry.
const NO_CAPACITY: &str = "no-capacity";

/// One entry of `spotswap:interrupted`: a spot pool that interrupted the group or had no
/// capacity for it, and when. Either way the pool is avoided for the interruption cool-down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interruption {
    pub instance_type: String,
    pub availability_zone: String,
    pub at: DateTime<Utc>,
    pub trouble: PoolTrouble,
}

impl Interruption {
    /// The entry as the tag holds it: `TYPE@AZ@RFC3339`, with `@no-capacity` for a capacity
    /// error.
    pub fn entry(&self) -> String {
        let suffix = match self.trouble {
            PoolTrouble::Interrupted => String::new(),
            PoolTrouble::NoCapacity => format!("@{NO_CAPACITY}"),
        };
        format!(
            "{}@{}@{}{suffix}",
            self.instance_type,
            self.availability_zone,
            self.at.to_rfc3339_opts(SecondsFormat::Secs, true)
        )
    }

    /// Whether this entry is about the pool `(instance_type, az)`.
    pub fn is_pool(&self, instance_type: &str, az: &str) -> bool {
        self.instance_type == instance_type && self.availability_zone == az
    }
}

/// Reads `spotswap:interrupted`: space-separated `TYPE@AZ@RFC3339` entries. `Err` carries the
/// unreadable value.
pub fn interruptions(tags: &BTreeMap<String, String>) -> Result<Vec<Interruption>, String> {
    let Some(v) = tags.get(INTERRUPTED) else {
        return Ok(Vec::new());
    };
    v.split_whitespace()
        .map(|entry| {
            let mut parts = entry.splitn(4, '@');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(t), Some(az), Some(at), cause) if !t.is_empty() && !az.is_empty() => {
                    let at = DateTime::parse_from_rfc3339(at)
                        .map_err(|_| v.clone())?
                        .with_timezone(&Utc);
                    let trouble = match cause {
                        None => PoolTrouble::Interrupted,
                        Some(NO_CAPACITY) => PoolTrouble::NoCapacity,
                        Some(_) => return Err(v.clone()),
                    };
                    Ok(Interruption {
                        instance_type: t.to_string(),
                        availability_zone: az.to_string(),
                        at,
                        trouble,
                    })
                }
                _ => Err(v.clone()),
            }
        })
        .collect()
}

/// The value of `spotswap:interrupted` after `latest`: the entries still inside the cool-down
/// (other pools only), oldest first, then `latest`, dropping the oldest until it fits AWS's
/// tag value limit. An unreadable old value is replaced rather than trusted.
pub fn record_interruption(
    tags: &BTreeMap<String, String>,
    latest: &Interruption,
    cooldown: chrono::Duration,
) -> String {
    record_pools(tags, std::slice::from_ref(latest), cooldown)
}

/// [`record_interruption`] for several pools found in trouble at the same moment.
pub fn record_pools(
    tags: &BTreeMap<String, String>,
    latest: &[Interruption],
    cooldown: chrono::Duration,
) -> String {
    let Some(now) = latest.iter().map(|l| l.at).max() else {
        return tags.get(INTERRUPTED).cloned().unwrap_or_default();
    };
    let mut entries: Vec<String> = interruptions(tags)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            now - e.at < cooldown
                && !latest
                    .iter()
                    .any(|l| e.is_pool(&l.instance_type, &l.availability_zone))
        })
        .map(|e| e.entry())
        .collect();
    entries.extend(latest.iter().map(Interruption::entry));
    while entries.join(" ").len() > TAG_VALUE_MAX && entries.len() > 1 {
        entries.remove(0);
    }
    entries.join(" ")
}

/// `spotswap:interrupted` as it is now (`current`, read just before the write) merged with the
/// value a writer meant to write (`intended`): per pool the newest entry of either, those still
/// inside the cool-down at `now`, oldest first, dropping the oldest until it fits AWS's tag
/// value limit. Two writers (a pass and the events function, or two warnings at once) that each
/// merge before writing never lose each other's entries. An unreadable value adds nothing.
pub fn merge_interrupted(
    current: &str,
    intended: &str,
    now: DateTime<Utc>,
    cooldown: chrono::Duration,
) -> String {
    let read = |v: &str| {
        interruptions(&BTreeMap::from([(INTERRUPTED.to_string(), v.to_string())]))
            .unwrap_or_default()
    };
    let mut newest: Vec<Interruption> = Vec::new();
    for e in read(current).into_iter().chain(read(intended)) {
        if now - e.at >= cooldown {
            continue;
        }
        match newest
            .iter_mut()
            .find(|n| n.is_pool(&e.instance_type, &e.availability_zone))
        {
            Some(n) if n.at >= e.at => {}
            Some(n) => *n = e,
            None => newest.push(e),
        }
    }
    newest.sort_by(|a, b| a.at.cmp(&b.at).then(a.entry().cmp(&b.entry())));
    let mut entries: Vec<String> = newest.iter().map(Interruption::entry).collect();
    while entries.join(" ").len() > TAG_VALUE_MAX && entries.len() > 1 {
        entries.remove(0);
    }
    entries.join(" ")
}

/// Whether `written` holds every entry of `intended` that is still inside the cool-down (or a
/// newer one for the same pool): the check after a write that no other writer's write, made at
/// the same moment, replaced it.
pub fn holds_interrupted(
    written: &str,
    intended: &str,
    now: DateTime<Utc>,
    cooldown: chrono::Duration,
) -> bool {
    merge_interrupted(written, intended, now, cooldown)
        == merge_interrupted(written, "", now, cooldown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::memory::{GroupBuilder, InstanceBuilder};

    #[test]
    fn two_writers_merged_keep_both_entries_and_the_newest_per_pool() {
        let now: DateTime<Utc> = "2026-12-07T10:00:00Z".parse().unwrap();
        let cooldown = chrono::Duration::minutes(60);
        let a = "m5a.large@us-east-1a@2026-12-07T09:50:00Z";
        let b = "m6i.large@us-east-1b@2026-12-07T09:55:00Z";
        let a_newer = "m5a.large@us-east-1a@2026-12-07T09:58:00Z";
        let old = "c5.large@us-east-1c@2026-12-07T08:00:00Z";
        assert_eq!(merge_interrupted(a, b, now, cooldown), format!("{a} {b}"));
        assert_eq!(merge_interrupted(b, a, now, cooldown), format!("{a} {b}"));
        assert_eq!(
            merge_interrupted(&format!("{a} {old}"), a_newer, now, cooldown),
            a_newer
        );
        assert_eq!(merge_interrupted("not a tag", b, now, cooldown), b);
        assert!(holds_interrupted(&format!("{a} {b}"), b, now, cooldown));
        assert!(!holds_interrupted(a, b, now, cooldown));
        // An entry past the cool-down need not survive.
        assert!(holds_interrupted(a, old, now, cooldown));
    }
    use chrono::Duration;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn settled_entries_keep_the_newest_and_refuse_what_is_not_a_pair_of_instances() {
        let tags = |v: &str| BTreeMap::from([(SETTLED.to_string(), v.to_string())]);
        let pair = |c: &str, m: &str| (c.to_string(), m.to_string());
        assert_eq!(settled(&BTreeMap::new()), Ok(vec![]));
        assert_eq!(
            settled(&tags("i-1>i-2 i-0abc>i-3")),
            Ok(vec![pair("i-1", "i-2"), pair("i-0abc", "i-3")])
        );
        for bad in ["i-1", "i-1>web", "i-1>i-2>i-3", ">i-2"] {
            assert_eq!(settled(&tags(bad)), Err(bad.to_string()), "{bad}");
        }
        // A clone's entry is replaced, not added to.
        assert_eq!(
            settled_value(&[pair("i-1", "i-2")], "i-1", "i-3"),
            "i-1>i-3"
        );
        let long = |n: u32| format!("i-{n:017x}");
        let kept: Vec<(String, String)> = (1..=SETTLED_KEPT as u32)
            .map(|n| (long(n), long(n + 100)))
            .collect();
        let v = settled_value(&kept, &long(999), &long(998));
        assert_eq!(v.split(' ').count(), SETTLED_KEPT);
        assert!(v.len() <= 256, "{} characters", v.len());
        assert!(
            !v.contains(&format!("{}>", long(1))) && v.ends_with(&long(998)),
            "{v}"
        );
        assert_eq!(settled(&tags(&v)).map(|e| e.len()), Ok(SETTLED_KEPT));
    }

    #[test]
    fn leases_round_trip_and_hold_until_their_instant() {
        let held = Lease::held("20261129T180000Z-7.a1b2c3", at("2026-11-29T18:04:00Z"));
        let released = Lease::released("20261129T180000Z-7.a1b2c3");
        for l in [&held, &released] {
            assert_eq!(lease(&tags(&[(LEASE, &l.value())])), Ok(Some(l.clone())));
        }
        assert_eq!(
            held.value(),
            "20261129T180000Z-7.a1b2c3 until 2026-11-29T18:04:00.000Z"
        );
        assert!(held.active_at(at("2026-11-29T18:03:59Z")));
        assert!(!held.active_at(at("2026-11-29T18:04:00Z")));
        assert!(!released.active_at(at("2026-11-29T18:00:00Z")));
        assert_eq!(lease(&tags(&[])), Ok(None));
        for bad in ["", "x", "x until soon", "x until", "x released y"] {
            assert_eq!(lease(&tags(&[(LEASE, bad)])), Err(bad.to_string()), "{bad}");
        }
    }

    #[test]
    fn interruption_entries_round_trip_through_the_tag() {
        let e = Interruption {
            instance_type: "m5a.large".into(),
            availability_zone: "us-east-1a".into(),
            at: at("2026-11-23T10:00:00Z"),
            trouble: Default::default(),
        };
        assert_eq!(e.entry(), "m5a.large@us-east-1a@2026-11-23T10:00:00Z");
        let t = tags(&[(INTERRUPTED, &format!("{} {}", e.entry(), e.entry()))]);
        assert_eq!(interruptions(&t).unwrap(), vec![e.clone(), e.clone()]);
        assert_eq!(interruptions(&tags(&[])).unwrap(), vec![]);
        // A capacity error is an entry of its own kind, read back as one.
        let full = Interruption {
            trouble: PoolTrouble::NoCapacity,
            ..e.clone()
        };
        assert_eq!(
            full.entry(),
            "m5a.large@us-east-1a@2026-11-23T10:00:00Z@no-capacity"
        );
        let t = tags(&[(INTERRUPTED, &format!("{} {}", e.entry(), full.entry()))]);
        assert_eq!(interruptions(&t).unwrap(), vec![e.clone(), full.clone()]);
        let bad = format!("{}@full", e.entry());
        assert_eq!(interruptions(&tags(&[(INTERRUPTED, &bad)])), Err(bad));
        // Several pools at once: each replaces its own old entry, the others stay.
        let other = Interruption {
            instance_type: "m6a.large".into(),
            ..e.clone()
        };
        let later = |i: &Interruption| Interruption {
            at: i.at + chrono::Duration::minutes(5),
            trouble: PoolTrouble::NoCapacity,
            ..i.clone()
        };
        let t = tags(&[(INTERRUPTED, &format!("{} {}", e.entry(), other.entry()))]);
        let got = record_pools(&t, &[later(&e)], chrono::Duration::hours(1));
        assert_eq!(got, format!("{} {}", other.entry(), later(&e).entry()));
        let got = record_pools(&t, &[later(&e), later(&other)], chrono::Duration::hours(1));
        assert_eq!(
            got,
            format!("{} {}", later(&e).entry(), later(&other).entry())
        );
    }

    #[test]
    fn unreadable_protocol_tags_are_errors_carrying_the_value() {
        for bad in [
            "m5.large",
            "m5.large@us-east-1a@yesterday",
            "@us-east-1a@2026-11-23T10:00:00Z",
        ] {
            assert_eq!(
                interruptions(&tags(&[(INTERRUPTED, bad)])),
                Err(bad.to_string())
            );
        }
        assert_eq!(max_size(&tags(&[(MAX_SIZE, "four")])), Err("four".into()));
        assert_eq!(max_size(&tags(&[(MAX_SIZE, " 4 ")])), Ok(Some(4)));
        assert_eq!(max_size(&tags(&[])), Ok(None));
        assert_eq!(max_size_value(4), "4");
    }

    #[test]
    fn recording_an_interruption_keeps_recent_entries_within_the_tag_limit() {
        let now = at("2026-11-23T10:00:00Z");
        let entry = |t: &str, az: &str, ago: i64| Interruption {
            instance_type: t.into(),
            availability_zone: az.into(),
            at: now - Duration::minutes(ago),
            trouble: Default::default(),
        };
        let old = entry("c5.large", "us-east-1b", 180);
        let recent = entry("m6i.large", "us-east-1c", 10);
        let same_pool = entry("m5a.large", "us-east-1a", 5);
        let value = [&old, &recent, &same_pool].map(|e| e.entry()).join(" ");
        let latest = entry("m5a.large", "us-east-1a", 0);
        let got = record_interruption(&tags(&[(INTERRUPTED, &value)]), &latest, Duration::hours(1));
        assert_eq!(got, format!("{} {}", recent.entry(), latest.entry()));

        let many: Vec<String> = (0..20)
            .map(|i| entry(&format!("m{i}.large"), "us-east-1a", i).entry())
            .collect();
        let got = record_interruption(
            &tags(&[(INTERRUPTED, &many.join(" "))]),
            &latest,
            Duration::hours(1),
        );
        assert!(got.len() <= TAG_VALUE_MAX, "{}", got.len());
        assert!(got.ends_with(&latest.entry()));
        // An unreadable value is replaced, not trusted.
        let got = record_interruption(&tags(&[(INTERRUPTED, "junk")]), &latest, Duration::hours(1));
        assert_eq!(got, latest.entry());
    }

    #[test]
    fn a_clone_gets_the_groups_propagated_tags_the_instances_tags_and_the_protocol_tags() {
        let group = GroupBuilder::new("web")
            .tag("private", "x")
            .propagated_tag("team", "web")
            .propagated_tag("cost", "group")
            .build();
        let instance = InstanceBuilder::on_demand("i-1", "m5.large", "us-east-1a")
            .in_group("web")
            .tag("cost", "instance")
            .tag("aws:autoscaling:groupName", "web")
            .tag(GROUP, "other")
            .tag(REPLACES, "i-0")
            .tag("Name", "web-1")
            .build();
        let got = clone_tags(&group, Some(&instance));
        assert_eq!(
            got,
            tags(&[
                ("team", "web"),
                ("cost", "instance"),
                ("Name", "web-1"),
                (GROUP, "web"),
                (REPLACES, "i-1"),
            ])
        );
        assert_eq!(
            clone_of(&Instance {
                tags: got,
                ..instance
            }),
            Some(("web", "i-1"))
        );
    }

    #[test]
    fn a_clone_keeps_the_protocol_tags_and_name_within_ec2s_fifty() {
        let group = GroupBuilder::new("web")
            .propagated_tag("team", "web")
            .build();
        // (user tags on the instance, tags kept, keys dropped)
        for (user, kept, dropped) in [
            (10, 13, 0),
            (47, 50, 0),
            (48, 50, 1),
            (49, 50, 2),
            (50, 50, 3),
        ] {
            let mut b = InstanceBuilder::on_demand("i-1", "m5.large", "us-east-1a")
                .tag("aws:cloudformation:stack-name", "stack");
            for n in 0..user - 1 {
                b = b.tag(format!("k{n:02}"), "v");
            }
            let instance = b.tag("Name", "web-1").build();
            let (tags, left_out) = clone_tags_within_limit(&group, Some(&instance));
            assert_eq!(
                (tags.len(), left_out.len()),
                (kept, dropped),
                "{user} user tags"
            );
            assert_eq!(tags.get(GROUP).map(String::as_str), Some("web"));
            assert_eq!(tags.get(REPLACES).map(String::as_str), Some("i-1"));
            assert_eq!(tags.get("Name").map(String::as_str), Some("web-1"));
            assert!(!tags.contains_key("aws:cloudformation:stack-name"));
            for k in &left_out {
                assert!(!tags.contains_key(k), "{k} both kept and dropped");
            }
            // The last keys in order are the ones left out.
            if dropped > 0 {
                assert_eq!(left_out.last().map(String::as_str), Some("team"));
            }
        }
    }

    #[test]
    fn a_launch_backoff_round_trips_through_its_tag_and_a_bad_value_is_refused() {
        let b = LaunchBackoff {
            failures: 3,
            until: at("2026-11-29T12:40:00Z"),
            clone: "i-0abc".into(),
            launched: at("2026-11-29T11:58:10Z"),
            reason: "Client.InternalError".into(),
        };
        let value = b.value();
        assert_eq!(
            value,
            "failures=3 until=2026-11-29T12:40:00Z clone=i-0abc \
             launched=2026-11-29T11:58:10Z reason=Client.InternalError"
        );
        let back = launch_backoff(&tags(&[(LAUNCH_BACKOFF, &value)])).unwrap();
        assert_eq!(back, Some(b.clone()));
        assert_eq!(launch_backoff(&tags(&[])).unwrap(), None);
        for bad in [
            "",
            "3",
            "failures=0 until=2026-11-29T12:40:00Z clone=i-1 launched=2026-11-29T11:58:10Z",
            "failures=x until=2026-11-29T12:40:00Z clone=i-1 launched=2026-11-29T11:58:10Z",
            "failures=1 until=noon clone=i-1 launched=2026-11-29T11:58:10Z",
            "failures=1 until=2026-11-29T12:40:00Z launched=2026-11-29T11:58:10Z",
        ] {
            assert_eq!(
                launch_backoff(&tags(&[(LAUNCH_BACKOFF, bad)])),
                Err(bad.to_string()),
                "{bad:?}"
            );
        }
        // A long reason is cut to fit AWS's 256 characters, and never breaks the format.
        let long = LaunchBackoff {
            reason: "x y".repeat(200),
            ..b
        };
        let value = long.value();
        assert_eq!(value.chars().count(), TAG_VALUE_MAX);
        let back = launch_backoff(&tags(&[(LAUNCH_BACKOFF, &value)]))
            .unwrap()
            .unwrap();
        assert_eq!(back.failures, 3);
    }
}
