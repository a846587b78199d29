//! The maintenance window: days of the week and a span of hours at a fixed UTC offset.
//!
//! Grammar (also the JSON form, a string): `[DAYS] HH:MM-HH:MM [OFFSET]`, for example
//! `Mon-Fri 02:00-05:00 +01:00`, `Sat,Sun 22:00-06:00 UTC`, `daily 01:30-04:00 -05:30`.
//! - DAYS: `daily` or `*` (the default), or a comma list of `Mon`..`Sun` and ranges `Mon-Fri`
//!   (a range may wrap: `Fri-Mon`); full names (`Monday`) work too, in any case.
//! - Hours: start and end in local time; an end at or before the start crosses midnight, and the
//!   window then belongs to the day it opens on (`Fri 22:00-02:00` is Friday night). `24:00` is
//!   allowed as an end. Start and end may not be equal.
//! - OFFSET: `UTC`, `Z`, `+HH:MM`, `-HH:MM` or `+HH` (at most 14 hours), UTC when left out.
//!
//! IANA zone names (`Europe/Berlin`) are refused for now: the engine reads no time zone
//! database, so a window follows a fixed offset and does not move with daylight saving time.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::policy::{PolicyError, shown};

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const FULL_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
/// Longest window text the parser accepts.
pub const MAX_WINDOW_LEN: usize = 128;

/// When installs may be triggered. See the module docs for the text form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MaintenanceWindow {
    /// Bit `d` set: the window opens on weekday `d` (0 = Monday .. 6 = Sunday).
    days: u8,
    /// Opening time, minutes after local midnight (0..1440).
    start_min: u16,
    /// Closing time, minutes after local midnight (1..=1440); at or before `start_min`: the next
    /// day.
    end_min: u16,
    /// Local time minus UTC, in minutes.
    offset_min: i16,
}

fn err(message: String) -> PolicyError {
    PolicyError::new("maintenance_window", message)
}

fn parse_day(s: &str) -> Option<u8> {
    let lower = s.to_ascii_lowercase();
    (0u8..7).find(|&d| {
        let d = usize::from(d);
        lower == DAY_NAMES[d].to_ascii_lowercase() || lower == FULL_NAMES[d]
    })
}

fn parse_days(s: &str) -> Result<u8, PolicyError> {
    if s == "*" || s.eq_ignore_ascii_case("daily") {
        return Ok(0x7f);
    }
    let mut days = 0u8;
    for item in s.split(',') {
        let bad = || {
            err(format!(
                "{} is not a day like Mon or a range like Mon-Fri",
                shown(item)
            ))
        };
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse_day(a).ok_or_else(bad)?, parse_day(b).ok_or_else(bad)?);
                let mut d = a;
                loop {
                    days |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days |= 1 << parse_day(item).ok_or_else(bad)?,
        }
    }
    Ok(days)
}

fn two_digits(s: &str) -> Option<u16> {
    (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `HH:MM` as minutes after midnight; `24:00` only when `allow_24`.
fn parse_clock(s: &str, allow_24: bool) -> Result<u16, PolicyError> {
    let bad = || err(format!("{} is not a time like 02:00", shown(s)));
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m) = (
        two_digits(h).ok_or_else(bad)?,
        two_digits(m).ok_or_else(bad)?,
    );
    if m > 59 || h > 24 || (h == 24 && (m != 0 || !allow_24)) {
        return Err(err(format!("{} is not a time of day", shown(s))));
    }
    Ok(h * 60 + m)
}

fn parse_offset(s: &str) -> Result<i16, PolicyError> {
    if s.eq_ignore_ascii_case("utc") || s.eq_ignore_ascii_case("z") {
        return Ok(0);
    }
    if s.contains('/') {
        return Err(err(format!(
            "time zone names like {} are not supported yet: give a fixed UTC offset such as +01:00",
            shown(s)
        )));
    }
    let rest = s
        .strip_prefix("UTC")
        .or_else(|| s.strip_prefix("utc"))
        .unwrap_or(s);
    let bad = || err(format!("{} is not a UTC offset like +01:00", shown(s)));
    let (sign, hm) = match rest.as_bytes().first() {
        Some(b'+') => (1i16, &rest[1..]),
        Some(b'-') => (-1i16, &rest[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = match hm.split_once(':') {
        Some((h, m)) => (
            two_digits(h).ok_or_else(bad)?,
            two_digits(m).ok_or_else(bad)?,
        ),
        None => (two_digits(hm).ok_or_else(bad)?, 0),
    };
    if m > 59 || h * 60 + m > 14 * 60 {
        return Err(err(format!("{} is beyond ±14:00", shown(s))));
    }
    // h * 60 + m <= 840 fits an i16.
    Ok(sign * (h * 60 + m) as i16)
}

impl MaintenanceWindow {
    /// Parses the text form (see the module docs).
    pub fn parse(input: &str) -> Result<Self, PolicyError> {
        if input.len() > MAX_WINDOW_LEN {
            return Err(err(format!("longer than {MAX_WINDOW_LEN} bytes")));
        }
        let tokens: Vec<&str> = input.split_whitespace().collect();
        let (days, hours, offset) = match tokens.as_slice() {
            [h] if h.contains(':') => ("daily", *h, "UTC"),
            [h, o] if h.contains(':') => ("daily", *h, *o),
            [d, h] => (*d, *h, "UTC"),
            [d, h, o] => (*d, *h, *o),
            _ => {
                return Err(err(format!(
                    "{} is not a window like `Mon-Fri 02:00-05:00 +01:00`",
                    shown(input)
                )));
            }
        };
        let days = parse_days(days)?;
        let (start, end) = hours
            .split_once('-')
            .ok_or_else(|| err(format!("{} is not a span like 02:00-05:00", shown(hours))))?;
        let start_min = parse_clock(start, false)?;
        let end_min = parse_clock(end, true)?;
        if start_min == end_min {
            return Err(err(format!(
                "{} opens and closes at the same time",
                shown(hours)
            )));
        }
        // `00:00` as an end is midnight at the end of the day.
        let end_min = if end_min == 0 { 24 * 60 } else { end_min };
        let offset_min = parse_offset(offset)?;
        Ok(Self {
            days,
            start_min,
            end_min,
            offset_min,
        })
    }

    /// Whether the window is open at `now_ms` (Unix time in milliseconds).
    pub fn is_open(&self, now_ms: i64) -> bool {
        let local = now_ms.saturating_add(i64::from(self.offset_min) * MINUTE_MS);
        let day = local.div_euclid(DAY_MS);
        let in_day = local.rem_euclid(DAY_MS);
        // 1970-01-01 was a Thursday (weekday 3 when Monday is 0).
        let weekday = (day + 3).rem_euclid(7);
        let has = |d: i64| self.days & (1 << d.rem_euclid(7)) != 0;
        let start = i64::from(self.start_min) * MINUTE_MS;
        let end = i64::from(self.end_min) * MINUTE_MS;
        if start < end {
            has(weekday) && start <= in_day && in_day < end
        } else {
            (has(weekday) && in_day >= start) || (has(weekday - 1) && in_day < end)
        }
    }
}

impl fmt::Display for MaintenanceWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.days == 0x7f {
            f.write_str("daily")?;
        } else {
            let mut first = true;
            let mut d = 0;
            while d < 7 {
                if self.days & (1 << d) == 0 {
                    d += 1;
                    continue;
                }
                let mut e = d;
                while e + 1 < 7 && self.days & (1 << (e + 1)) != 0 {
                    e += 1;
                }
                if !first {
                    f.write_str(",")?;
                }
                first = false;
                if e == d {
                    f.write_str(DAY_NAMES[d])?;
                } else {
                    write!(f, "{}-{}", DAY_NAMES[d], DAY_NAMES[e])?;
                }
                d = e + 1;
            }
        }
        let clock = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        let sign = if self.offset_min < 0 { '-' } else { '+' };
        let off = self.offset_min.unsigned_abs();
        write!(
            f,
            " {}-{} {sign}{:02}:{:02}",
            clock(self.start_min),
            clock(self.end_min),
            off / 60,
            off % 60
        )
    }
}

impl Serialize for MaintenanceWindow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MaintenanceWindow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        MaintenanceWindow::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2026-11-30 00:00 UTC, a Monday.
    const MONDAY: i64 = 1_795_996_800_000;
    const HOUR: i64 = 3_600_000;

    fn w(s: &str) -> MaintenanceWindow {
        MaintenanceWindow::parse(s).unwrap()
    }

    #[test]
    fn the_reference_monday_is_a_monday() {
        // 20787 days after 1970-01-01 (a Thursday): 20787 % 7 == 4, Thursday + 4 = Monday.
        assert_eq!(MONDAY % DAY_MS, 0);
        assert_eq!((MONDAY / DAY_MS + 3) % 7, 0);
    }

    #[test]
    fn weekday_window_opens_at_local_time() {
        let win = w("Mon-Fri 02:00-05:00 +01:00");
        // 02:00 at +01:00 is 01:00 UTC.
        assert!(!win.is_open(MONDAY + HOUR - 1));
        assert!(win.is_open(MONDAY + HOUR));
        assert!(win.is_open(MONDAY + 4 * HOUR - 1));
        assert!(!win.is_open(MONDAY + 4 * HOUR));
        // Saturday (day 5) and Sunday are closed; Friday is open.
        assert!(win.is_open(MONDAY + 4 * 24 * HOUR + 2 * HOUR));
        assert!(!win.is_open(MONDAY + 5 * 24 * HOUR + 2 * HOUR));
        assert!(!win.is_open(MONDAY + 6 * 24 * HOUR + 2 * HOUR));
    }

    #[test]
    fn a_window_crossing_midnight_belongs_to_the_day_it_opens() {
        let win = w("Fri 22:00-02:00 UTC");
        let friday = MONDAY + 4 * 24 * HOUR;
        assert!(!win.is_open(friday + 21 * HOUR));
        assert!(win.is_open(friday + 22 * HOUR));
        assert!(
            win.is_open(friday + 25 * HOUR),
            "Saturday 01:00 is still Friday night"
        );
        assert!(!win.is_open(friday + 26 * HOUR));
        // Thursday night -> Friday 01:00 is not in it: Thursday is not a window day.
        assert!(!win.is_open(friday + HOUR));
        // Sunday wraps to Monday morning.
        let sun = w("Sun 23:00-01:00 -05:30");
        let sunday_23_local = MONDAY + 6 * 24 * HOUR + 23 * HOUR + 5 * HOUR + HOUR / 2;
        assert!(sun.is_open(sunday_23_local));
        assert!(sun.is_open(sunday_23_local + 2 * HOUR - 1));
        assert!(!sun.is_open(sunday_23_local + 2 * HOUR));
    }

    #[test]
    fn negative_times_and_wide_offsets_do_not_panic() {
        let win = w("daily 00:00-24:00 -14:00");
        assert!(win.is_open(i64::MIN));
        assert!(win.is_open(-1));
        assert!(win.is_open(i64::MAX));
    }

    #[test]
    fn the_text_form_is_canonical() {
        assert_eq!(
            w("mon-FRI 02:00-05:00 +01:00").to_string(),
            "Mon-Fri 02:00-05:00 +01:00"
        );
        assert_eq!(w("02:00-05:00").to_string(), "daily 02:00-05:00 +00:00");
        assert_eq!(
            w("Sat,Sunday 22:00-06:00 Z").to_string(),
            "Sat-Sun 22:00-06:00 +00:00"
        );
        assert_eq!(
            w("Fri-Mon 10:00-11:00 -03").to_string(),
            "Mon,Fri-Sun 10:00-11:00 -03:00"
        );
        assert_eq!(
            w("Mon,Wed 10:00-00:00 UTC+05:45").to_string(),
            "Mon,Wed 10:00-24:00 +05:45"
        );
    }

    #[test]
    fn bad_windows_say_what_is_wrong() {
        for (input, needle) in [
            ("", "not a window"),
            ("Mon-Fri", "not a window"),
            ("Mon-Fri 02:00", "not a span"),
            ("Mon-Fri 2:00-05:00", "not a time"),
            ("Mon-Fri 02:00-25:00", "not a time of day"),
            ("Mon-Fri 24:00-05:00", "not a time of day"),
            ("Mon-Fri 02:60-05:00", "not a time of day"),
            ("Mon-Fro 02:00-05:00", "not a day"),
            ("Mon-Fri 02:00-02:00", "same time"),
            ("Mon-Fri 02:00-05:00 Europe/Berlin", "not supported yet"),
            ("Mon-Fri 02:00-05:00 +15:00", "beyond"),
            ("Mon-Fri 02:00-05:00 +1", "not a UTC offset"),
            ("Mon 02:00-05:00 +01:00 extra", "not a window"),
        ] {
            let e = MaintenanceWindow::parse(input).unwrap_err();
            assert_eq!(e.field, "maintenance_window");
            assert!(e.message.contains(needle), "{input:?}: {e}");
        }
        assert!(
            MaintenanceWindow::parse(&"M".repeat(200))
                .unwrap_err()
                .message
                .contains("longer")
        );
    }

    /// A second, naive implementation: walk the window's openings around `t`.
    fn open_by_enumeration(win: &MaintenanceWindow, t: i64) -> bool {
        let off = i64::from(win.offset_min) * MINUTE_MS;
        let local_day = (t + off).div_euclid(DAY_MS);
        (local_day - 1..=local_day).any(|day| {
            let weekday = (day + 3).rem_euclid(7);
            if win.days & (1 << weekday) == 0 {
                return false;
            }
            let open = day * DAY_MS + i64::from(win.start_min) * MINUTE_MS - off;
            let mut close = day * DAY_MS + i64::from(win.end_min) * MINUTE_MS - off;
            if win.end_min <= win.start_min {
                close += DAY_MS;
            }
            open <= t && t < close
        })
    }

    fn any_window() -> impl Strategy<Value = MaintenanceWindow> {
        (1u8..0x80, 0u16..1440, 1u16..=1440, -840i16..=840).prop_filter_map(
            "start != end",
            |(days, start_min, end_min, offset_min)| {
                (start_min != end_min).then_some(MaintenanceWindow {
                    days,
                    start_min,
                    end_min,
                    offset_min,
                })
            },
        )
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC{0,80}") {
            let _ = MaintenanceWindow::parse(&s);
        }

        #[test]
        fn parser_never_panics_on_window_like_text(s in "[MTWFSadehinortu0-9:,+*Z -]{0,40}") {
            let _ = MaintenanceWindow::parse(&s);
        }

        #[test]
        fn display_parses_back(win in any_window()) {
            prop_assert_eq!(MaintenanceWindow::parse(&win.to_string()), Ok(win));
        }

        #[test]
        fn is_open_agrees_with_enumerating_openings(
            win in any_window(),
            t in -4_000_000_000_000i64..4_000_000_000_000,
        ) {
            prop_assert_eq!(win.is_open(t), open_by_enumeration(&win, t));
        }
    }
}
