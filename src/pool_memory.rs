//! Writing the pool memory, `spotswap:interrupted` on a group (spot pools that interrupted it
//! or had no capacity for it), so that no writer loses another's entries: a pass records pools
//! without capacity while the events function records an interruption, and two warnings can
//! come at once. The value is read fresh just before the write and merged with it
//! (`protocol::merge_interrupted`), then read back; if another writer's write replaced it
//! meanwhile, the merge is made again, a few times at most.
//!
//! It decides nothing about what to avoid (the planner reads the tag) and never logs.

use chrono::{DateTime, Duration, Utc};

use crate::cloud::{Actuator, CloudError, Inventory};
use crate::protocol;

/// Writes made at most for one record: enough for a handful of writers at the same moment.
const ATTEMPTS: usize = 3;

/// Records `intended` (entries to add) in the group's `spotswap:interrupted`, merged with what
/// the tag holds now. Returns the value written last.
pub async fn record<A: Actuator + Inventory>(
    act: &A,
    group: &str,
    intended: &str,
    now: DateTime<Utc>,
    cooldown: Duration,
) -> Result<String, CloudError> {
    let names = [group.to_string()];
    let read = async || -> Result<String, CloudError> {
        Ok(act
            .group_tags(&names, protocol::INTERRUPTED)
            .await?
            .remove(group)
            .unwrap_or_default())
    };
    let mut current = read().await?;
    let mut written = String::new();
    for _ in 0..ATTEMPTS {
        written = protocol::merge_interrupted(&current, intended, now, cooldown);
        act.tag_group(group, protocol::INTERRUPTED, &written)
            .await?;
        current = read().await?;
        if protocol::holds_interrupted(&current, intended, now, cooldown) {
            break;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::Account as _;
    use crate::cloud::memory::{GroupBuilder, MemoryCloud};

    #[tokio::test(start_paused = true)]
    async fn two_writers_at_once_both_keep_their_entries() {
        let cloud = MemoryCloud::new();
        cloud.add_region("us-east-1", &["us-east-1a"]);
        cloud.put_group("us-east-1", GroupBuilder::new("web").build());
        // Every call takes a while, so the two writers' reads and writes interleave.
        cloud.set_latency(std::time::Duration::from_millis(50));
        let now = cloud.now();
        let cooldown = Duration::minutes(60);
        let a = format!(
            "m5a.large@us-east-1a@{}",
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let b = format!("{a}@no-capacity").replace("m5a.large", "m6i.large");
        let (r1, r2) = (cloud.region("us-east-1"), cloud.region("us-east-1"));
        let (x, y) = tokio::join!(
            record(&r1, "web", &a, now, cooldown),
            record(&r2, "web", &b, now, cooldown)
        );
        x.unwrap();
        y.unwrap();
        let tag = cloud.group("us-east-1", "web").unwrap().tags[protocol::INTERRUPTED].clone();
        assert!(tag.contains(&a) && tag.contains(&b), "{tag}");
    }
}
