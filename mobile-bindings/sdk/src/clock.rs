//! The phone's clock, and how far off it is from the server's.
//!
//! A phone's clock can be hours off (set by hand, a wrong time zone taken for UTC, a dead
//! battery): the server refuses fixes more than five minutes in its future and takes fixes
//! hours in its past as a stale position, and an alert's expiry compared with a fast clock
//! would end it on the phone while it is still in force. So the client learns the offset from
//! the `Date` header of every server answer, keeps it across restarts, and uses the server's
//! time for what it decides itself. Tokens do not depend on it: the SDK never reads a token's
//! expiry, it refreshes when the server answers 401.

use std::sync::atomic::{AtomicI64, Ordering};

/// Below this the phone's clock is taken as right: `Date` has one-second resolution and the
/// answer takes time to arrive.
pub(crate) const TOLERANCE_MS: i64 = 60_000;
/// Marks an offset not learned yet.
const UNKNOWN: i64 = i64::MIN;

#[derive(Debug)]
pub(crate) struct Clock {
    /// How far the device clock is made off on purpose (tests, diagnostics); 0 otherwise.
    device_error_ms: AtomicI64,
    /// Server time minus device time, or [`UNKNOWN`].
    offset_ms: AtomicI64,
}

impl Clock {
    pub(crate) fn new(offset_ms: Option<i64>) -> Clock {
        Clock {
            device_error_ms: AtomicI64::new(0),
            offset_ms: AtomicI64::new(offset_ms.unwrap_or(UNKNOWN)),
        }
    }

    pub(crate) fn set_device_error(&self, ms: i64) {
        self.device_error_ms.store(ms, Ordering::Relaxed);
    }

    /// What the phone's own clock says, Unix ms.
    pub(crate) fn device_now(&self) -> i64 {
        vigil_protocol::Timestamp::now()
            .0
            .saturating_add(self.device_error_ms.load(Ordering::Relaxed))
    }

    /// Server time minus device time, once an answer has told it.
    pub(crate) fn offset(&self) -> Option<i64> {
        Some(self.offset_ms.load(Ordering::Relaxed)).filter(|o| *o != UNKNOWN)
    }

    /// The server's time as the phone best knows it (its own clock until an answer came).
    pub(crate) fn now(&self) -> i64 {
        self.device_now().saturating_add(self.offset().unwrap_or(0))
    }

    /// Learns the offset from a server answer's `Date`; the new offset when it moved by more
    /// than the header's resolution (to be kept), `None` otherwise.
    pub(crate) fn observe(&self, headers: &reqwest::header::HeaderMap) -> Option<i64> {
        let date = headers.get(reqwest::header::DATE)?.to_str().ok()?;
        // The header is truncated to the second: its middle is the best guess.
        let server = http_date_ms(date)?.saturating_add(500);
        let offset = server.saturating_sub(self.device_now());
        let moved = self.offset().is_none_or(|old| (old - offset).abs() > 2_000);
        if moved {
            self.offset_ms.store(offset, Ordering::Relaxed);
            return Some(offset);
        }
        None
    }

    /// A fix's time in the server's clock. The operating system stamps a fix either with the
    /// device clock (then it is near the device's now, and is moved by the offset) or with
    /// satellite time (then it is near the server's now, and is right as it is): with a clock
    /// hours off the two are far apart. Within [`TOLERANCE_MS`] nothing is moved.
    pub(crate) fn fix_time(&self, at: i64) -> i64 {
        let Some(offset) = self.offset().filter(|o| o.abs() > TOLERANCE_MS) else {
            return at;
        };
        let device = self.device_now();
        let server = device.saturating_add(offset);
        if at.abs_diff(device) < at.abs_diff(server) {
            at.saturating_add(offset)
        } else {
            at
        }
    }
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7) as Unix ms; the obsolete
/// forms are not sent by any server this SDK talks to.
fn http_date_ms(s: &str) -> Option<i64> {
    let mut parts = s.split_once(", ")?.1.split(' ');
    let day: i64 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let (h, m, sec): (i64, i64, i64) = (
        hms.next()?.parse().ok()?,
        hms.next()?.parse().ok()?,
        hms.next()?.parse().ok()?,
    );
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = i64::try_from(MONTHS.iter().position(|n| *n == month)? + 1).ok()?;
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + m) * 60_000 + sec * 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_are_read() {
        assert_eq!(
            http_date_ms("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777_000)
        );
        assert_eq!(
            http_date_ms("Thu, 03 Dec 2026 10:51:22 GMT"),
            Some(1_796_295_082_000)
        );
        assert_eq!(http_date_ms("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(http_date_ms("garbage"), None);
    }

    #[test]
    fn a_fix_stamped_by_a_clock_hours_off_is_moved_and_a_satellite_one_is_not() {
        let clock = Clock::new(None);
        let three_hours = 3 * 3_600_000;
        clock.set_device_error(three_hours);
        let device = clock.device_now();
        // Nothing known yet: the fix is as the app gave it.
        assert_eq!(clock.fix_time(device), device);
        clock.offset_ms.store(-three_hours, Ordering::Relaxed);
        assert!((clock.fix_time(device - 10_000) - (device - three_hours - 10_000)).abs() < 5);
        let satellite = device - three_hours - 10_000;
        assert_eq!(clock.fix_time(satellite), satellite);
        // A clock a few seconds off is left alone.
        clock.offset_ms.store(-3_000, Ordering::Relaxed);
        assert_eq!(clock.fix_time(device), device);
    }
}
