//! Dates and date-times: SEARCH's `date`, APPEND's `date-time`.

use super::{PErr, Parser, R, bad};
use crate::types::*;

impl Parser<'_> {
    fn month(&mut self) -> R<u8> {
        let m = self.take_while(|c| c.is_ascii_alphabetic(), "a month")?;
        MONTHS
            .iter()
            .position(|n| n.as_bytes().eq_ignore_ascii_case(m))
            .map(|i| i as u8 + 1)
            .ok_or_else(|| PErr::Bad("bad month".into()))
    }

    fn digits(&mut self, min: usize, max: usize) -> R<u32> {
        let start = self.pos;
        let d = self.take_while(|c| c.is_ascii_digit(), "digits")?;
        if d.len() < min || d.len() > max {
            self.pos = start;
            return bad("bad number of digits");
        }
        Ok(d.iter().fold(0, |n, &c| n * 10 + u32::from(c - b'0')))
    }

    fn date_text(&mut self) -> R<Date> {
        let day = self.digits(1, 2)?;
        self.byte(b'-', "-")?;
        let month = self.month()?;
        self.byte(b'-', "-")?;
        let year = self.digits(4, 4)?;
        if !(1..=31).contains(&day) {
            return bad("bad day");
        }
        Ok(Date {
            year: year as u16,
            month,
            day: day as u8,
        })
    }

    pub(super) fn date(&mut self) -> R<Date> {
        if self.peek()? == b'"' {
            self.pos += 1;
            let d = self.date_text()?;
            self.byte(b'"', "\"")?;
            Ok(d)
        } else {
            self.date_text()
        }
    }

    pub(super) fn date_time(&mut self) -> R<DateTime> {
        self.byte(b'"', "a date-time")?;
        if self.peek()? == b' ' {
            self.pos += 1;
        }
        let date = self.date_text()?;
        self.sp()?;
        let hour = self.digits(2, 2)?;
        self.byte(b':', ":")?;
        let minute = self.digits(2, 2)?;
        self.byte(b':', ":")?;
        let second = self.digits(2, 2)?;
        self.sp()?;
        let sign = match self.peek()? {
            b'+' => 1,
            b'-' => -1,
            _ => return bad("expected a zone"),
        };
        self.pos += 1;
        let zone = self.digits(4, 4)?;
        self.byte(b'"', "\"")?;
        if hour > 23 || minute > 59 || second > 60 || zone / 100 > 23 || zone % 100 > 59 {
            return bad("bad time");
        }
        Ok(DateTime {
            date,
            hour: hour as u8,
            minute: minute as u8,
            second: second as u8,
            zone: sign * (zone / 100 * 60 + zone % 100) as i16,
        })
    }
}
