//! Where the layer and the in-memory store read the time from.
//!
//! Tests inject a [`ManualClock`] and move time forward instead of sleeping.

use std::fmt;
use std::sync::{Arc, Mutex};

use time::{Duration, OffsetDateTime};

use crate::expiry::Unix;

/// A source of the current time.
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// Now, in UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock, the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to: for tests of expiry.
///
/// ```
/// use session_layer::clock::{Clock, ManualClock};
/// use time::Duration;
///
/// let clock = ManualClock::new();
/// let start = clock.now();
/// clock.advance(Duration::minutes(5));
/// assert_eq!(clock.now() - start, Duration::minutes(5));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<OffsetDateTime>>);

impl ManualClock {
    /// A clock stopped at the current system time, to the whole second.
    pub fn new() -> Self {
        let now = OffsetDateTime::now_utc();
        Self::at(now.replace_nanosecond(0).unwrap_or(now))
    }

    /// A clock stopped at `start`.
    pub fn at(start: OffsetDateTime) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    /// Moves the clock by `by` (forward for a positive duration).
    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether `C` is the [`SystemClock`]: a layer and a memory store that
/// both are may share one reading of it per request.
pub(crate) fn is_system_clock<C: Clock>() -> bool {
    std::any::TypeId::of::<C>() == std::any::TypeId::of::<SystemClock>()
}

/// Now, in whole seconds (records keep whole seconds, so that every store
/// gives back exactly what it was given). `system`: `clock` is the
/// [`SystemClock`], read here without building an `OffsetDateTime`.
pub(crate) fn now_seconds(clock: &dyn Clock, system: bool) -> Unix {
    if system {
        if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            return i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
        }
    }
    clock.now().unix_timestamp()
}
