//! Where the phone stands with its alerts, decided on the phone and kept current.
//!
//! The client keeps the person's alerts in force with their places ([`AlertPlaces`]) and the
//! last place the operating system reported. It re-evaluates when the phone moves
//! ([`Client::device_moved`], or a fix recorded for sending) and when the alerts change (an
//! `alert` or `alert_cancelled` message on the stream, a reconnect), and tells the app each
//! change as [`Event::Placement`]. In location-less mode nothing of this leaves the phone.

use std::collections::BTreeMap;

use crate::geofence::{AlertPlaces, Placement, WatchRegion};
use crate::{Client, Event, SdkError};

/// The phone's own geofencing state.
#[derive(Debug, Default)]
pub(crate) struct OnDevice {
    places: AlertPlaces,
    /// The last position the operating system gave (latitude, longitude).
    here: Option<(f64, f64)>,
    /// What the app was last told, per alert.
    told: BTreeMap<i64, Placement>,
}

impl OnDevice {
    /// The changes since the app was last told, remembered as told.
    fn changes(&mut self, now_ms: i64) -> Vec<Event> {
        let now: BTreeMap<i64, Placement> = match self.here {
            Some((lat, lon)) => self.places.placements(lat, lon, now_ms),
            None => self.places.in_force(now_ms),
        };
        let mut events = Vec::new();
        for (id, p) in &now {
            if self.told.get(id) != Some(p) {
                events.push(Event::Placement {
                    alert_id: *id,
                    placement: Some(*p),
                });
            }
        }
        for id in self.told.keys().filter(|id| !now.contains_key(id)) {
            events.push(Event::Placement {
                alert_id: *id,
                placement: None,
            });
        }
        self.told = now;
        events
    }
}

impl Client {
    /// Fetches the person's alerts in force with their places and re-evaluates the last known
    /// position against them; returns how many alerts are in force.
    pub async fn refresh_places(&self) -> Result<usize, SdkError> {
        let list = self.alert_areas().await?;
        let places = AlertPlaces::new(&list)?;
        let count = places.len();
        let events = {
            let mut state = self.lock_on_device();
            state.places = places;
            state.changes(self.inner.clock.now())
        };
        for e in events {
            self.emit(e);
        }
        Ok(count)
    }

    /// The operating system reports the phone at (`lat`, `lon`): re-evaluates on the phone
    /// (nothing is sent) and returns where it stands with every alert in force.
    pub fn device_moved(&self, lat: f64, lon: f64) -> BTreeMap<i64, Placement> {
        let (events, now) = {
            let mut state = self.lock_on_device();
            state.here = Some((lat, lon));
            let events = state.changes(self.inner.clock.now());
            (events, state.told.clone())
        };
        for e in events {
            self.emit(e);
        }
        now
    }

    /// Circles around the alert places nearest the last known position, at most `limit`
    /// (18 on iOS, 90 on Android), for the operating system to watch; none before a position.
    pub fn watch_regions(&self, limit: usize) -> Vec<WatchRegion> {
        let state = self.lock_on_device();
        match state.here {
            Some((lat, lon)) => state
                .places
                .watch_regions(lat, lon, self.inner.clock.now(), limit),
            None => Vec::new(),
        }
    }

    fn lock_on_device(&self) -> std::sync::MutexGuard<'_, OnDevice> {
        self.inner
            .on_device
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
