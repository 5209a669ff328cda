//! The EventBridge events spotswap reacts to, read from their exact JSON shapes.
//!
//! A scheduled tick runs a pass; a spot interruption warning (and, when enabled, a rebalance
//! recommendation) for an instance triggers a replacement. Anything else is an error that names
//! the event's source and detail-type. Pure: parsing only, no I/O, no logging.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// `detail-type` of a schedule rule's event.
pub const SCHEDULED: &str = "Scheduled Event";
/// `detail-type` of a spot interruption warning (EC2 User Guide, "Spot Instance interruption
/// notices"), sent about two minutes before EC2 reclaims the instance.
pub const SPOT_INTERRUPTION: &str = "EC2 Spot Instance Interruption Warning";
/// `detail-type` of a rebalance recommendation: a soft signal that the instance is at
/// elevated risk of interruption.
pub const REBALANCE: &str = "EC2 Instance Rebalance Recommendation";

/// An event spotswap understands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Event {
    /// Time for a pass.
    Scheduled { time: Option<DateTime<Utc>> },
    /// A spot instance is about to be reclaimed.
    SpotInterruption {
        region: String,
        instance_id: String,
        /// `terminate`, `stop` or `hibernate`.
        action: String,
        time: Option<DateTime<Utc>>,
    },
    /// A spot instance is at elevated risk of interruption.
    Rebalance {
        region: String,
        instance_id: String,
        time: Option<DateTime<Utc>>,
    },
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("unsupported event: source {event_source:?}, detail-type {detail_type:?}")]
    Unsupported {
        event_source: String,
        detail_type: String,
    },
    #[error("malformed {detail_type:?} event: {problem}")]
    Malformed {
        detail_type: String,
        problem: String,
    },
    #[error("not an EventBridge event: {0}")]
    NotAnEvent(String),
}

/// Reads an EventBridge event.
pub fn parse(value: &serde_json::Value) -> Result<Event, EventError> {
    let Some(obj) = value.as_object() else {
        return Err(EventError::NotAnEvent("expected a JSON object".into()));
    };
    let text = |key: &str| obj.get(key).and_then(|v| v.as_str());
    let (Some(source), Some(detail_type)) = (text("source"), text("detail-type")) else {
        return Err(EventError::NotAnEvent(
            "no \"source\" and \"detail-type\" fields".into(),
        ));
    };
    let time = text("time")
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let malformed = |problem: &str| EventError::Malformed {
        detail_type: detail_type.to_string(),
        problem: problem.to_string(),
    };
    let detail = obj.get("detail").and_then(|d| d.as_object());
    let detail_text = |key: &str| {
        detail
            .and_then(|d| d.get(key))
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
    };
    match (source, detail_type) {
        ("aws.events", SCHEDULED) => Ok(Event::Scheduled { time }),
        ("aws.ec2", SPOT_INTERRUPTION) | ("aws.ec2", REBALANCE) => {
            let region = text("region")
                .filter(|r| !r.is_empty())
                .ok_or_else(|| malformed("no \"region\""))?;
            let instance_id = detail_text("instance-id")
                .filter(|id| id.starts_with("i-"))
                .ok_or_else(|| malformed("no \"detail.instance-id\""))?;
            if detail_type == REBALANCE {
                return Ok(Event::Rebalance {
                    region: region.into(),
                    instance_id: instance_id.into(),
                    time,
                });
            }
            let action = detail_text("instance-action")
                .ok_or_else(|| malformed("no \"detail.instance-action\""))?;
            Ok(Event::SpotInterruption {
                region: region.into(),
                instance_id: instance_id.into(),
                action: action.into(),
                time,
            })
        }
        _ => Err(EventError::Unsupported {
            event_source: source.into(),
            detail_type: detail_type.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> serde_json::Value {
        let path = format!(
            "{}/tests/fixtures/events/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    #[test]
    fn a_schedule_rule_event_is_a_pass() {
        let e = parse(&fixture("scheduled.json")).unwrap();
        assert!(matches!(e, Event::Scheduled { time: Some(_) }));
    }

    #[test]
    fn an_interruption_warning_names_the_region_instance_and_action() {
        let e = parse(&fixture("spot-interruption.json")).unwrap();
        assert_eq!(
            e,
            Event::SpotInterruption {
                region: "us-east-2".into(),
                instance_id: "i-1234567890abcdef0".into(),
                action: "terminate".into(),
                time: Some("2026-11-23T09:15:00Z".parse().unwrap()),
            }
        );
    }

    #[test]
    fn a_rebalance_recommendation_names_the_instance() {
        let e = parse(&fixture("rebalance.json")).unwrap();
        assert!(
            matches!(e, Event::Rebalance { ref instance_id, .. } if instance_id == "i-1234567890abcdef0")
        );
    }

    #[test]
    fn other_events_are_refused_naming_source_and_detail_type() {
        let err = parse(&fixture("state-change.json")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("aws.ec2") && text.contains("EC2 Instance State-change Notification")
        );
    }

    #[test]
    fn malformed_events_say_what_is_missing() {
        let mut e = fixture("spot-interruption.json");
        e["detail"].as_object_mut().unwrap().remove("instance-id");
        assert!(parse(&e).unwrap_err().to_string().contains("instance-id"));
        let mut e = fixture("spot-interruption.json");
        e["detail"]["instance-action"] = serde_json::Value::String(String::new());
        assert!(
            parse(&e)
                .unwrap_err()
                .to_string()
                .contains("instance-action")
        );
        assert!(matches!(
            parse(&serde_json::json!({"hello": "world"})),
            Err(EventError::NotAnEvent(_))
        ));
        assert!(matches!(
            parse(&serde_json::json!([1, 2])),
            Err(EventError::NotAnEvent(_))
        ));
    }
}
