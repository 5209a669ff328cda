//! Reading Auto Scaling's scaling activities (`DescribeScalingActivities`) into what the swap
//! protocol needs from them: which instance was attached, and which left its group with desired
//! capacity decremented on request or any other way.
//!
//! Auto Scaling states this only in words (Amazon EC2 Auto Scaling User Guide, "Verify a scaling
//! activity for an Auto Scaling group"; API reference, `Activity`): an activity's `Description`
//! names the instance
//! ("Attaching an existing EC2 instance: i-…", "Terminating EC2 instance: i-…", "Detaching EC2
//! instance: i-…") and its `Cause` says why ("… was taken out of service in response to a user
//! request, shrinking the capacity from 3 to 2."). Both adapters, the AWS one and the in-memory
//! one, read them here, so the tests exercise the same reading. Anything not recognised is
//! left out rather than guessed: the planner acts on an activity only when it can tell what it
//! was, and does nothing otherwise (see ARCHITECTURE.md, "The swap protocol as a state
//! machine"). Pure: no I/O.

use chrono::{DateTime, Utc};

use crate::model::{Activity, ActivityKind};

/// `Description` of an attach (`AttachInstances`).
pub const ATTACHING: &str = "Attaching an existing EC2 instance: ";
/// `Description` of a member's termination, on request or by Auto Scaling.
pub const TERMINATING: &str = "Terminating EC2 instance: ";
/// `Description` of a detach (`DetachInstances`).
pub const DETACHING: &str = "Detaching EC2 instance: ";

/// In a `Cause`: taken out (terminated or detached) on request with desired capacity
/// decremented, as `TerminateInstanceInAutoScalingGroup` and `DetachInstances` with
/// `ShouldDecrementDesiredCapacity` do.
pub const ON_REQUEST_WITH_DECREMENT: &str = "in response to a user request, shrinking the capacity";
/// In a `Cause`: taken out on request without decrement (the group replaces it).
pub const ON_REQUEST: &str = "in response to a user request";
/// In a `Cause`: a scale-in (desired capacity lowered, then a member chosen).
pub const SCALE_IN: &str = "in response to a difference between desired and actual capacity";
/// In a `Cause`: a failed health or status check (the instance was terminated, stopped or
/// reclaimed; the group replaces it).
pub const HEALTH: &str = "health check";
/// In a `Cause`: a failed status check.
pub const STATUS: &str = "status check";

/// Reads one activity; `None` for one that failed or was cancelled, and for one the protocol
/// does not recognise.
pub fn read(description: &str, cause: &str, status: &str, at: DateTime<Utc>) -> Option<Activity> {
    if matches!(status, "Failed" | "Cancelled") {
        return None;
    }
    let instance = |prefix: &str| {
        description
            .strip_prefix(prefix)
            .map(str::trim)
            .filter(|id| id.starts_with("i-") && !id.contains(char::is_whitespace))
            .map(str::to_string)
    };
    let (instance_id, kind) = if let Some(id) = instance(ATTACHING) {
        (id, ActivityKind::Attached)
    } else if let Some(id) = instance(TERMINATING).or_else(|| instance(DETACHING)) {
        let kind = if cause.contains(ON_REQUEST_WITH_DECREMENT) {
            ActivityKind::RemovedWithDecrement
        } else if cause.contains(ON_REQUEST)
            || cause.contains(SCALE_IN)
            || cause.contains(HEALTH)
            || cause.contains(STATUS)
        {
            ActivityKind::Left
        } else {
            return None;
        };
        (id, kind)
    } else {
        return None;
    };
    Some(Activity {
        instance_id,
        kind,
        at,
    })
}

/// A `Cause` as Auto Scaling words it for an instance taken out of its group: on request with or
/// without decrement, by a scale-in, or after a health check. The in-memory cloud writes these.
pub fn cause(instance: &str, why: Leaving, at: DateTime<Utc>, from: u32, to: u32) -> String {
    let at = at.format("%Y-%m-%dT%H:%M:%SZ");
    match why {
        Leaving::OnRequest { decrement: true } => format!(
            "At {at} instance {instance} was taken out of service {ON_REQUEST_WITH_DECREMENT} from {from} to {to}."
        ),
        Leaving::OnRequest { decrement: false } => {
            format!("At {at} instance {instance} was taken out of service {ON_REQUEST}.")
        }
        Leaving::ScaleIn => format!(
            "At {at} a user request explicitly set group desired capacity changing the desired \
             capacity from {from} to {to}. At {at} an instance was taken out of service {SCALE_IN}, \
             shrinking the capacity from {from} to {to}."
        ),
        Leaving::Health => format!(
            "At {at} an instance was taken out of service in response to an EC2 {HEALTH} \
             indicating it has been terminated or stopped."
        ),
    }
}

/// A `Cause` as Auto Scaling words it for an attach that brought desired capacity to `to`. The
/// in-memory cloud writes it.
pub fn attach_cause(at: DateTime<Utc>, to: u32) -> String {
    let at = at.format("%Y-%m-%dT%H:%M:%SZ");
    format!("At {at} an instance was added {ON_REQUEST}. Keeping the capacity at the new {to}.")
}

/// Why an instance leaves its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaving {
    /// `TerminateInstanceInAutoScalingGroup` or `DetachInstances`.
    OnRequest { decrement: bool },
    /// Desired capacity lowered, and this member chosen to go.
    ScaleIn,
    /// Terminated or reclaimed outside the group (a health check finds it gone).
    Health,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        "2026-11-29T10:00:00Z".parse().unwrap()
    }

    fn kind(description: &str, cause: &str) -> Option<ActivityKind> {
        read(description, cause, "Successful", at()).map(|a| a.kind)
    }

    #[test]
    fn attaches_and_removals_are_told_apart_by_their_cause() {
        use ActivityKind::*;
        let id = "i-0123456789abcdef0";
        let cases = [
            (
                "Attaching an existing EC2 instance: i-0123456789abcdef0",
                "At 2026-11-29T10:00:00Z an instance was added in response to a user request. \
                 Keeping the capacity at the new 3.",
                Some(Attached),
            ),
            (
                "Terminating EC2 instance: i-0123456789abcdef0",
                "At 2026-11-29T10:00:00Z instance i-0123456789abcdef0 was taken out of service in \
                 response to a user request, shrinking the capacity from 3 to 2.",
                Some(RemovedWithDecrement),
            ),
            (
                "Detaching EC2 instance: i-0123456789abcdef0",
                "At 2026-11-29T10:00:00Z instance i-0123456789abcdef0 was detached in response to \
                 a user request, shrinking the capacity from 3 to 2.",
                Some(RemovedWithDecrement),
            ),
            (
                "Terminating EC2 instance: i-0123456789abcdef0",
                "At 2026-11-29T10:00:00Z instance i-0123456789abcdef0 was taken out of service in \
                 response to a user request.",
                Some(Left),
            ),
            (
                "Terminating EC2 instance: i-0123456789abcdef0",
                "At 2026-11-29T09:59:00Z a user request explicitly set group desired capacity \
                 changing the desired capacity from 3 to 2. At 2026-11-29T10:00:00Z an instance \
                 was taken out of service in response to a difference between desired and actual \
                 capacity, shrinking the capacity from 3 to 2.",
                Some(Left),
            ),
            (
                "Terminating EC2 instance: i-0123456789abcdef0",
                "At 2026-11-29T10:00:00Z an instance was taken out of service in response to an \
                 EC2 health check indicating it has been terminated or stopped.",
                Some(Left),
            ),
            // Not recognised: left out, never guessed.
            (
                "Terminating EC2 instance: i-0123456789abcdef0",
                "At 2026-11-29T10:00:00Z something new happened.",
                None,
            ),
            (
                "Launching a new EC2 instance: i-0123456789abcdef0",
                "At 2026-11-29T10:00:00Z an instance was started in response to a difference \
                 between desired and actual capacity, increasing the capacity from 2 to 3.",
                None,
            ),
            ("Attaching an existing EC2 instance: ", "", None),
        ];
        for (description, cause, want) in cases {
            assert_eq!(kind(description, cause), want, "{description} / {cause}");
        }
        let a = read(cases[0].0, cases[0].1, "Successful", at()).unwrap();
        assert_eq!((a.instance_id.as_str(), a.at), (id, at()));
        assert_eq!(read(cases[0].0, cases[0].1, "Failed", at()), None);
    }

    #[test]
    fn the_causes_the_memory_cloud_writes_read_back_as_what_they_say() {
        let id = "i-1";
        let read_as = |why| {
            let d = format!("{TERMINATING}{id}");
            kind(&d, &cause(id, why, at(), 3, 2))
        };
        use ActivityKind::*;
        assert_eq!(
            read_as(Leaving::OnRequest { decrement: true }),
            Some(RemovedWithDecrement)
        );
        assert_eq!(read_as(Leaving::OnRequest { decrement: false }), Some(Left));
        assert_eq!(read_as(Leaving::ScaleIn), Some(Left));
        assert_eq!(read_as(Leaving::Health), Some(Left));
    }
}
