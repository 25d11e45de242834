//! Standard five-field cron schedules (minute, hour, day of month, month, day of week) as CronJobs write them:
//! `*`, lists, ranges, steps, month and day names, `?` for any, and the macros `@yearly` (`@annually`),
//! `@monthly`, `@weekly`, `@daily` (`@midnight`) and `@hourly`. When both day fields are restricted, a day
//! matching either runs (as cron does). Times are in the schedule's time zone (IANA name, UTC by default).

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use crate::limits;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Both day fields restricted: a day runs if either matches.
    either_day: bool,
    zone: TimeZone,
}

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// The set of values one field allows, as bits, and whether it was `*` (or `?`).
fn field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<(u64, bool), String> {
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + min);
        }
        s.parse::<u32>().map_err(|_| format!("{s:?} is not a number"))
    };
    let mut bits = 0u64;
    let mut star = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().map_err(|_| format!("bad step {s:?}"))?),
            None => (part, 1),
        };
        if step == 0 {
            return Err("a step must be positive".into());
        }
        let (low, high) = match range {
            "*" | "?" => {
                star = star || step == 1;
                (min, max)
            }
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if part.contains('/') => (value(r)?, max),
                None => (value(r)?, value(r)?),
            },
        };
        if low < min || high > max || low > high {
            return Err(format!("{part:?} is outside {min}-{max}"));
        }
        for v in (low..=high).step_by(step as usize) {
            bits |= 1 << v;
        }
    }
    Ok((bits, star))
}

impl Schedule {
    /// Parses a schedule, in `time_zone` when given.
    pub fn parse(text: &str, time_zone: Option<&str>) -> Result<Schedule, String> {
        let expanded = match text.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields.as_slice() else {
            return Err(format!("expected exactly 5 fields, found {}: {text:?}", fields.len()));
        };
        let zone = match time_zone {
            None | Some("") | Some("UTC") | Some("Etc/UTC") => TimeZone::UTC,
            Some(name) => TimeZone::get(name).map_err(|e| format!("unknown time zone {name:?}: {e}"))?,
        };
        let (minutes, _) = field(minute, 0, 59, &[])?;
        let (hours, _) = field(hour, 0, 23, &[])?;
        let (days, any_day) = field(dom, 1, 31, &[])?;
        let (months, _) = field(month, 1, 12, &MONTHS)?;
        // 7 is Sunday too.
        let (weekdays, any_weekday) = field(dow, 0, 7, &WEEKDAYS)?;
        let weekdays = (weekdays | (weekdays >> 7)) & 0x7f;
        Ok(Schedule {
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: weekdays as u8,
            either_day: !any_day && !any_weekday,
            zone,
        })
    }

    fn day_matches(&self, date: Date) -> bool {
        let dom = self.days & (1 << date.day()) != 0;
        let dow = self.weekdays & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        if self.either_day {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// The first time strictly after `after` the schedule fires; None if none within `CRON_SEARCH_DAYS_MAX`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let local = self.zone.to_datetime(after);
        let start = local.with().second(0).subsec_nanosecond(0).build().ok()?.checked_add(1.minute()).ok()?;
        let mut day = start.date();
        for i in 0..limits::CRON_SEARCH_DAYS_MAX {
            if self.months & (1 << day.month()) != 0 && self.day_matches(day) {
                let (first_hour, first_minute) = if i == 0 { (start.hour(), start.minute()) } else { (0, 0) };
                for hour in first_hour..24 {
                    if self.hours & (1 << hour) == 0 {
                        continue;
                    }
                    let from = if hour == first_hour { first_minute } else { 0 };
                    for minute in from..60 {
                        if self.minutes & (1 << minute) == 0 {
                            continue;
                        }
                        let Ok(zoned) = self.zone.to_ambiguous_zoned(day.at(hour, minute, 0, 0)).compatible() else {
                            continue;
                        };
                        if zoned.timestamp() > after {
                            return Some(zoned.timestamp());
                        }
                    }
                }
            }
            day = day.tomorrow().ok()?;
        }
        None
    }

    /// The latest time in (`after`, `now`] the schedule fired, and how many times it fired there (counted up to
    /// `CRON_MISSED_MAX`).
    pub fn latest(&self, after: Timestamp, now: Timestamp) -> (Option<Timestamp>, usize) {
        let mut latest = None;
        let mut count = 0;
        let mut t = after;
        while let Some(next) = self.next_after(t) {
            if next > now {
                break;
            }
            latest = Some(next);
            count += 1;
            t = next;
            if count >= limits::CRON_MISSED_MAX {
                // Too many to walk one by one: jump to the last hour before now and look from there.
                let near = now.checked_sub(1.hour()).unwrap_or(now);
                if near > t {
                    t = near;
                }
            }
        }
        (latest, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn fields_steps_ranges_lists_and_names() {
        let s = Schedule::parse("*/15 9-17 * * mon-fri", None).unwrap();
        assert_eq!(s.next_after(ts("2026-12-05T08:59:00Z")), Some(ts("2026-12-07T09:00:00Z")), "a Saturday");
        assert_eq!(s.next_after(ts("2026-12-07T09:00:00Z")), Some(ts("2026-12-07T09:15:00Z")));
        assert_eq!(s.next_after(ts("2026-12-07T17:45:00Z")), Some(ts("2026-12-08T09:00:00Z")));
        let s = Schedule::parse("5,10 0 1 jan,jul *", None).unwrap();
        assert_eq!(s.next_after(ts("2026-02-01T00:00:00Z")), Some(ts("2026-07-01T00:05:00Z")));
        assert!(Schedule::parse("* * * *", None).is_err());
        assert!(Schedule::parse("60 * * * *", None).is_err());
        assert!(Schedule::parse("*/0 * * * *", None).is_err());
    }

    #[test]
    fn macros_and_either_day_and_sunday_as_seven() {
        let hourly = Schedule::parse("@hourly", None).unwrap();
        assert_eq!(hourly.next_after(ts("2026-12-05T10:00:00Z")), Some(ts("2026-12-05T11:00:00Z")));
        let s = Schedule::parse("0 0 13 * 5", None).unwrap();
        // The 13th or a Friday, whichever comes first: 2026-12-11 is a Friday.
        assert_eq!(s.next_after(ts("2026-12-05T00:00:00Z")), Some(ts("2026-12-11T00:00:00Z")));
        let sunday = Schedule::parse("0 12 * * 7", None).unwrap();
        assert_eq!(sunday.next_after(ts("2026-12-05T00:00:00Z")), Some(ts("2026-12-06T12:00:00Z")));
    }

    #[test]
    fn time_zones_and_the_latest_missed_run() {
        let s = Schedule::parse("30 8 * * *", Some("America/New_York")).unwrap();
        assert_eq!(s.next_after(ts("2026-12-05T00:00:00Z")), Some(ts("2026-12-05T13:30:00Z")));
        assert!(Schedule::parse("* * * * *", Some("Mars/Olympus")).is_err());
        let every = Schedule::parse("* * * * *", None).unwrap();
        let (latest, count) = every.latest(ts("2026-12-05T10:00:30Z"), ts("2026-12-05T10:05:10Z"));
        assert_eq!((latest, count), (Some(ts("2026-12-05T10:05:00Z")), 5));
        let (latest, _) = every.latest(ts("2026-11-01T00:00:00Z"), ts("2026-12-05T10:05:10Z"));
        assert_eq!(latest, Some(ts("2026-12-05T10:05:00Z")), "a month of minutes missed");
    }
}
