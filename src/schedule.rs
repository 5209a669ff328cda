//! When spotswap may act on a group: an hours-and-weekdays window in a timezone, switched
//! on or off.
//!
//! The format is AutoSpotting's two-field cron `"<hours> <weekdays>"` (`"9-17 1-5"`), so its
//! users keep their tags. Unlike AutoSpotting, whose window ended at the start of the last listed
//! hour, a listed hour is inside for all of its 60 minutes, as in cron: `9-17` means 09:00 to
//! 17:59. Pure: the time to judge is always passed in.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

use crate::Error;

/// An hours-and-weekdays window. Weekdays count from Sunday = 0 (7 is Sunday too).
#[derive(Clone, PartialEq, Eq)]
pub struct Schedule {
    text: String,
    hours: [bool; 24],
    weekdays: [bool; 7],
}

/// Whether the schedule says where to act (`on`) or where not to (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleState {
    /// Act inside the window.
    On,
    /// Act outside the window.
    Off,
}

impl FromStr for ScheduleState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim() {
            "on" => Ok(ScheduleState::On),
            "off" => Ok(ScheduleState::Off),
            _ => Err(Error::Invalid("expected on or off".into())),
        }
    }
}

impl Schedule {
    /// The window that is always open: `"* *"`.
    pub fn always() -> Schedule {
        Schedule {
            text: "* *".into(),
            hours: [true; 24],
            weekdays: [true; 7],
        }
    }

    /// Whether `now`, seen in `tz`, falls inside the window.
    pub fn contains(&self, now: DateTime<Utc>, tz: Tz) -> bool {
        let local = now.with_timezone(&tz);
        self.hours[local.hour() as usize]
            && self.weekdays[local.weekday().num_days_from_sunday() as usize]
    }

    /// Whether a pass at `now` may act, given the state.
    pub fn allows(&self, now: DateTime<Utc>, tz: Tz, state: ScheduleState) -> bool {
        self.contains(now, tz) == (state == ScheduleState::On)
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.text)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Schedule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let fields: Vec<&str> = s.split_whitespace().collect();
        let [hours, weekdays] = fields.as_slice() else {
            return Err(Error::Invalid(
                "expected two fields, \"<hours> <weekdays>\", for example \"9-17 1-5\"".into(),
            ));
        };
        let hours = parse_field(hours, 0, 23).map_err(|e| Error::Invalid(format!("hours: {e}")))?;
        let days =
            parse_field(weekdays, 0, 7).map_err(|e| Error::Invalid(format!("weekdays: {e}")))?;
        let mut h = [false; 24];
        for v in hours {
            h[v as usize] = true;
        }
        let mut w = [false; 7];
        for v in days {
            w[(v % 7) as usize] = true;
        }
        Ok(Schedule {
            text: fields.join(" "),
            hours: h,
            weekdays: w,
        })
    }
}

/// Parses one cron field: `*`, `N`, `A-B`, any of those with `/STEP`, joined by commas.
fn parse_field(field: &str, min: u32, max: u32) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("bad step {s:?}"))?;
                if step == 0 {
                    return Err("a step must be at least 1".into());
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (number(a, min, max)?, number(b, min, max)?)
        } else {
            let n = number(range, min, max)?;
            (n, n)
        };
        if lo > hi {
            return Err(format!("range {range:?} runs backwards"));
        }
        out.extend((lo..=hi).step_by(step as usize));
    }
    Ok(out)
}

fn number(text: &str, min: u32, max: u32) -> Result<u32, String> {
    let n: u32 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if n < min || n > max {
        return Err(format!("{n} is outside {min}-{max}"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    // 2019-05-09 is a Thursday and 2019-05-11 a Saturday: AutoSpotting's own test dates.
    #[test]
    fn star_star_is_always_inside() {
        let s: Schedule = "* *".parse().unwrap();
        assert!(s.contains(at(2019, 5, 11, 3, 0), Tz::UTC));
        assert!(s.contains(at(2019, 5, 9, 23, 59), Tz::UTC));
    }

    #[test]
    fn working_hours_window_is_inside_only_on_weekday_hours() {
        let s: Schedule = "9-18 1-5".parse().unwrap();
        for (h, m) in [(4, 0), (21, 0), (8, 59), (19, 0)] {
            assert!(!s.contains(at(2019, 5, 9, h, m), Tz::UTC), "{h}:{m}");
        }
        for (h, m) in [(9, 0), (9, 1), (10, 0), (17, 59), (18, 30)] {
            assert!(s.contains(at(2019, 5, 9, h, m), Tz::UTC), "{h}:{m}");
        }
        assert!(!s.contains(at(2019, 5, 11, 12, 0), Tz::UTC), "saturday");
    }

    #[test]
    fn the_window_is_judged_in_the_schedules_timezone() {
        let s: Schedule = "9-18 1-5".parse().unwrap();
        // 08:01 UTC is 09:01 in London (BST).
        assert!(s.contains(at(2019, 5, 9, 8, 1), chrono_tz::Europe::London));
        assert!(!s.contains(at(2019, 5, 9, 8, 1), Tz::UTC));
    }

    #[test]
    fn state_off_acts_outside_the_window() {
        let s: Schedule = "9-18 1-5".parse().unwrap();
        assert!(!s.allows(at(2019, 5, 9, 10, 0), Tz::UTC, ScheduleState::Off));
        assert!(s.allows(at(2019, 5, 9, 20, 0), Tz::UTC, ScheduleState::Off));
        assert!(s.allows(at(2019, 5, 9, 10, 0), Tz::UTC, ScheduleState::On));
    }

    #[test]
    fn lists_steps_and_sunday_as_seven_parse() {
        let s: Schedule = "0-6/2,22 0,6-7".parse().unwrap();
        assert!(s.contains(at(2019, 5, 11, 4, 0), Tz::UTC)); // Saturday 04:00
        assert!(!s.contains(at(2019, 5, 11, 5, 0), Tz::UTC));
        assert!(s.contains(at(2019, 5, 12, 22, 0), Tz::UTC)); // Sunday 22:00
        assert!(!s.contains(at(2019, 5, 9, 4, 0), Tz::UTC)); // Thursday
    }

    #[test]
    fn malformed_schedules_are_errors() {
        for bad in [
            "9- 1-5", "9-18", "25 *", "* 8", "18-9 *", "a b", "*/0 *", "* * *",
        ] {
            assert!(bad.parse::<Schedule>().is_err(), "{bad:?} should not parse");
        }
    }
}
