//! Business-day arithmetic for a country: its weekend days, public holidays
//! and UTC offset are data in the node configuration (Malaysia's weekend
//! differs by state, so nothing here assumes Saturday and Sunday).

use serde::{Deserialize, Serialize};
use time::{Date, Duration, OffsetDateTime, UtcOffset, Weekday};

use super::agreement::Deadline;

/// A country's working calendar.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Calendar {
    /// Local time offset, e.g. `+07:00` (Cambodia, Thailand, Viet Nam) or `+08:00` (Malaysia).
    pub utc_offset: String,
    /// Days off every week, lowercase English names.
    pub weekend: Vec<String>,
    /// Public holidays, `YYYY-MM-DD`.
    pub holidays: Vec<String>,
}

impl Default for Calendar {
    fn default() -> Self {
        Self {
            utc_offset: "+07:00".into(),
            weekend: vec!["saturday".into(), "sunday".into()],
            holidays: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("calendar `{key}`: {message}")]
pub struct CalendarError {
    pub key: String,
    pub message: String,
}

/// A [`Calendar`] checked and ready to count with.
#[derive(Debug, Clone)]
pub struct WorkCalendar {
    offset: UtcOffset,
    weekend: Vec<Weekday>,
    holidays: Vec<Date>,
}

fn weekday(name: &str) -> Option<Weekday> {
    Some(match name.to_ascii_lowercase().as_str() {
        "monday" => Weekday::Monday,
        "tuesday" => Weekday::Tuesday,
        "wednesday" => Weekday::Wednesday,
        "thursday" => Weekday::Thursday,
        "friday" => Weekday::Friday,
        "saturday" => Weekday::Saturday,
        "sunday" => Weekday::Sunday,
        _ => return None,
    })
}

impl Calendar {
    pub fn compile(&self) -> Result<WorkCalendar, CalendarError> {
        let err = |key: &str, message: String| CalendarError {
            key: key.to_string(),
            message,
        };
        let offset = UtcOffset::parse(
            &self.utc_offset,
            time::macros::format_description!("[offset_hour sign:mandatory]:[offset_minute]"),
        )
        .map_err(|_| {
            err(
                "utc_offset",
                format!("`{}` is not like +07:00", self.utc_offset),
            )
        })?;
        let mut weekend = Vec::new();
        for (i, d) in self.weekend.iter().enumerate() {
            weekend.push(weekday(d).ok_or_else(|| {
                err(&format!("weekend[{i}]"), format!("`{d}` is not a day name"))
            })?);
        }
        if weekend.len() >= 7 {
            return Err(err("weekend", "at least one working day is needed".into()));
        }
        let mut holidays = Vec::new();
        for (i, h) in self.holidays.iter().enumerate() {
            holidays.push(
                Date::parse(h, time::macros::format_description!("[year]-[month]-[day]")).map_err(
                    |_| {
                        err(
                            &format!("holidays[{i}]"),
                            format!("`{h}` is not YYYY-MM-DD"),
                        )
                    },
                )?,
            );
        }
        Ok(WorkCalendar {
            offset,
            weekend,
            holidays,
        })
    }
}

impl WorkCalendar {
    pub fn is_business_day(&self, date: Date) -> bool {
        !self.weekend.contains(&date.weekday()) && !self.holidays.contains(&date)
    }

    /// When a deadline that starts at `start` falls due. Business days count
    /// whole working days after the day of `start` (in local time) and keep
    /// its time of day: received Friday 10:00 with a Saturday–Sunday
    /// weekend, 3 business days are due Wednesday 10:00.
    pub fn due(&self, start: OffsetDateTime, deadline: Deadline) -> OffsetDateTime {
        match deadline {
            Deadline::Hours(h) => start + Duration::hours(i64::from(h)),
            Deadline::Days(d) => start + Duration::days(i64::from(d)),
            Deadline::BusinessDays(n) => {
                let local = start.to_offset(self.offset);
                let mut date = local.date();
                let mut left = n;
                // A calendar with no working days is refused at compile; the
                // bound only guards against an endless holiday list.
                let mut guard = 0;
                while left > 0 && guard < 3660 {
                    date = date.next_day().unwrap_or(date);
                    if self.is_business_day(date) {
                        left -= 1;
                    }
                    guard += 1;
                }
                date.with_time(local.time())
                    .assume_offset(self.offset)
                    .to_offset(start.offset())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn thailand() -> WorkCalendar {
        Calendar {
            utc_offset: "+07:00".into(),
            weekend: vec!["saturday".into(), "sunday".into()],
            holidays: vec!["2026-12-31".into()],
        }
        .compile()
        .unwrap()
    }

    #[test]
    fn business_days_skip_the_weekend_and_holidays() {
        let cal = thailand();
        // Friday 2026-11-20 10:00 local.
        let fri = datetime!(2026-11-20 03:00 UTC);
        assert_eq!(
            cal.due(fri, Deadline::BusinessDays(3)),
            datetime!(2026-11-25 03:00 UTC)
        );
        // Received on Saturday: counting starts Monday.
        let sat = datetime!(2026-11-21 03:00 UTC);
        assert_eq!(
            cal.due(sat, Deadline::BusinessDays(1)),
            datetime!(2026-11-23 03:00 UTC)
        );
        // Tuesday 2026-12-29 + 2 business days skips the 31st holiday.
        let tue = datetime!(2026-12-29 03:00 UTC);
        assert_eq!(
            cal.due(tue, Deadline::BusinessDays(2)),
            datetime!(2027-01-01 03:00 UTC)
        );
    }

    #[test]
    fn the_local_date_decides_not_utc() {
        let cal = thailand();
        // 2026-11-20 20:00 UTC is already Saturday 03:00 in Bangkok.
        let t = datetime!(2026-11-20 20:00 UTC);
        assert_eq!(
            cal.due(t, Deadline::BusinessDays(1)),
            datetime!(2026-11-22 20:00 UTC)
        );
    }

    #[test]
    fn a_friday_saturday_weekend_as_in_some_malaysian_states() {
        let kelantan = Calendar {
            utc_offset: "+08:00".into(),
            weekend: vec!["friday".into(), "saturday".into()],
            holidays: vec![],
        }
        .compile()
        .unwrap();
        // Thursday 2026-11-19 09:00 local + 1 business day = Sunday.
        let thu = datetime!(2026-11-19 01:00 UTC);
        assert_eq!(
            kelantan.due(thu, Deadline::BusinessDays(1)),
            datetime!(2026-11-22 01:00 UTC)
        );
    }

    #[test]
    fn calendar_days_and_hours_ignore_the_calendar() {
        let cal = thailand();
        let fri = datetime!(2026-11-20 03:00 UTC);
        assert_eq!(
            cal.due(fri, Deadline::Days(3)),
            datetime!(2026-11-23 03:00 UTC)
        );
        assert_eq!(
            cal.due(fri, Deadline::Hours(24)),
            datetime!(2026-11-21 03:00 UTC)
        );
    }

    #[test]
    fn bad_calendars_name_the_key() {
        let bad = Calendar {
            weekend: vec!["caturday".into()],
            ..Calendar::default()
        };
        assert_eq!(bad.compile().unwrap_err().key, "weekend[0]");
        let bad = Calendar {
            holidays: vec!["25/12/2026".into()],
            ..Calendar::default()
        };
        assert_eq!(bad.compile().unwrap_err().key, "holidays[0]");
    }
}
