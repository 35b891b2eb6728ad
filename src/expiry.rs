//! When a session ends.
//!
//! Expiry is server-side and authoritative (S29–S31): the record carries its
//! creation and last-activity times, and the deadline is computed from them.
//! The cookie's `Max-Age` only mirrors it (S14).

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// Browsers cap cookie lifetimes at 400 days (RFC 6265bis); so do we.
pub const MAX_COOKIE_AGE: Duration = Duration::days(400);

/// How long a session lives: an idle timeout (from the last activity), an
/// absolute timeout (from creation), or both; with a persistent cookie or a
/// browser-session cookie (no `Max-Age`).
///
/// ```
/// use session_layer::Expiry;
/// use time::Duration;
///
/// // Signed out after 30 minutes without a request, and after 12 hours at most.
/// let expiry = Expiry::idle(Duration::minutes(30)).with_absolute(Duration::hours(12));
/// assert_eq!(expiry.idle_timeout(), Some(Duration::minutes(30)));
/// assert!(expiry.is_persistent());
///
/// // Gone when the browser closes; the server still ends it after a day idle.
/// assert!(!Expiry::browser_session().is_persistent());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiry {
    #[serde(
        rename = "i",
        with = "opt_seconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    idle: Option<Duration>,
    #[serde(
        rename = "a",
        with = "opt_seconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    absolute: Option<Duration>,
    #[serde(rename = "p")]
    persistent: bool,
}

impl Expiry {
    /// The server-side idle timeout of [`Expiry::browser_session`].
    pub const BROWSER_SESSION_IDLE: Duration = Duration::days(1);

    /// Ends the session `timeout` after its last request; persistent cookie.
    pub const fn idle(timeout: Duration) -> Self {
        Self {
            idle: Some(timeout),
            absolute: None,
            persistent: true,
        }
    }

    /// Ends the session `timeout` after it was created, whatever the
    /// activity; persistent cookie.
    pub const fn absolute(timeout: Duration) -> Self {
        Self {
            idle: None,
            absolute: Some(timeout),
            persistent: true,
        }
    }

    /// A cookie without `Max-Age`, which the browser drops when it closes.
    /// Browsers that restore sessions keep such cookies, so the server still
    /// ends the session after [`Expiry::BROWSER_SESSION_IDLE`] idle (change it
    /// with [`Expiry::with_idle`]).
    pub const fn browser_session() -> Self {
        Self {
            idle: Some(Self::BROWSER_SESSION_IDLE),
            absolute: None,
            persistent: false,
        }
    }

    /// Sets the idle timeout.
    pub const fn with_idle(mut self, timeout: Duration) -> Self {
        self.idle = Some(timeout);
        self
    }

    /// Sets the absolute timeout, kept together with any idle timeout.
    pub const fn with_absolute(mut self, timeout: Duration) -> Self {
        self.absolute = Some(timeout);
        self
    }

    /// The idle timeout, if any.
    pub const fn idle_timeout(&self) -> Option<Duration> {
        self.idle
    }

    /// The absolute timeout, if any.
    pub const fn absolute_timeout(&self) -> Option<Duration> {
        self.absolute
    }

    /// Whether the cookie carries `Max-Age` (false for a browser session).
    pub const fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// When a session created at `created_at` and last active at
    /// `last_active` ends.
    pub fn deadline(
        &self,
        created_at: OffsetDateTime,
        last_active: OffsetDateTime,
    ) -> OffsetDateTime {
        let idle = self.idle.map(|d| last_active.saturating_add(d));
        let absolute = self.absolute.map(|d| created_at.saturating_add(d));
        match (idle, absolute) {
            (Some(i), Some(a)) => i.min(a),
            (Some(d), None) | (None, Some(d)) => d,
            // Unreachable through the constructors; a day is a safe bound.
            (None, None) => last_active.saturating_add(Self::BROWSER_SESSION_IDLE),
        }
    }

    /// The cookie's `Max-Age` for a session ending at `deadline`: `None` for
    /// a browser session; never above the time left nor [`MAX_COOKIE_AGE`].
    pub fn max_age(&self, deadline: OffsetDateTime, now: OffsetDateTime) -> Option<Duration> {
        self.persistent
            .then(|| (deadline - now).clamp(Duration::ZERO, MAX_COOKIE_AGE))
    }

    /// Whether a read-only request at `now` should extend the idle deadline:
    /// only once `fraction` of the idle window has passed since the last
    /// recorded activity, so most reads cost no store write (S32).
    pub fn refresh_due(
        &self,
        last_active: OffsetDateTime,
        now: OffsetDateTime,
        fraction: f64,
    ) -> bool {
        match self.idle {
            Some(idle) => now - last_active >= idle * fraction,
            None => false,
        }
    }
}

/// A time inside the layer: unix seconds. A request's clock reading, the
/// record's times and the deadlines computed from them are whole seconds
/// (that is how every store keeps them), and adding and comparing them as
/// integers costs none of `OffsetDateTime`'s calendar arithmetic.
pub(crate) type Unix = i64;

/// `OffsetDateTime`'s range in unix seconds (-9999-01-01 and 9999-12-31
/// 23:59:59 UTC): deadlines saturate here, as `saturating_add` does, so
/// every one converts back.
const MIN_UNIX: Unix = -377_705_116_800;
const MAX_UNIX: Unix = 253_402_300_799;

/// `t` as an `OffsetDateTime`; out-of-range times saturate.
pub(crate) fn to_datetime(t: Unix) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t.clamp(MIN_UNIX, MAX_UNIX))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `t + d`, in whole seconds, saturating at the ends of the range.
fn add(t: Unix, d: Duration) -> Unix {
    t.saturating_add(d.whole_seconds())
        .clamp(MIN_UNIX, MAX_UNIX)
}

/// [`Expiry`]'s rules on [`Unix`] times: what the layer runs per request.
/// The public methods above are the same rules on `OffsetDateTime`s; a
/// test holds the two together.
impl Expiry {
    pub(crate) fn deadline_at(&self, created_at: Unix, last_active: Unix) -> Unix {
        let idle = self.idle.map(|d| add(last_active, d));
        let absolute = self.absolute.map(|d| add(created_at, d));
        match (idle, absolute) {
            (Some(i), Some(a)) => i.min(a),
            (Some(d), None) | (None, Some(d)) => d,
            (None, None) => add(last_active, Self::BROWSER_SESSION_IDLE),
        }
    }

    pub(crate) fn max_age_at(&self, deadline: Unix, now: Unix) -> Option<Duration> {
        self.persistent.then(|| {
            Duration::seconds(
                deadline
                    .saturating_sub(now)
                    .clamp(0, MAX_COOKIE_AGE.whole_seconds()),
            )
        })
    }

    pub(crate) fn refresh_due_at(&self, last_active: Unix, now: Unix, fraction: f64) -> bool {
        match self.idle {
            Some(idle) => Duration::seconds(now.saturating_sub(last_active)) >= idle * fraction,
            None => false,
        }
    }
}

impl Default for Expiry {
    /// A browser session (see [`Expiry::browser_session`]).
    fn default() -> Self {
        Self::browser_session()
    }
}

mod opt_seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.whole_seconds()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<i64>::deserialize(d)?.map(Duration::seconds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

    #[test]
    fn s29_idle_deadline_moves_with_activity() {
        let e = Expiry::idle(Duration::minutes(30));
        assert_eq!(e.deadline(T0, T0), T0 + Duration::minutes(30));
        assert_eq!(
            e.deadline(T0, T0 + Duration::hours(5)),
            T0 + Duration::minutes(330)
        );
    }

    #[test]
    fn s30_absolute_deadline_ignores_activity() {
        let e = Expiry::idle(Duration::minutes(30)).with_absolute(Duration::hours(1));
        assert_eq!(
            e.deadline(T0, T0 + Duration::minutes(50)),
            T0 + Duration::hours(1)
        );
        assert_eq!(
            Expiry::absolute(Duration::hours(1)).deadline(T0, T0 + Duration::days(9)),
            T0 + Duration::hours(1)
        );
    }

    #[test]
    fn s14_max_age_mirrors_the_time_left_and_is_capped() {
        let e = Expiry::idle(Duration::days(1000));
        assert_eq!(e.max_age(e.deadline(T0, T0), T0), Some(MAX_COOKIE_AGE));
        let e = Expiry::absolute(Duration::hours(2));
        assert_eq!(
            e.max_age(e.deadline(T0, T0), T0 + Duration::hours(1)),
            Some(Duration::hours(1))
        );
        assert_eq!(e.max_age(T0, T0 + Duration::hours(1)), Some(Duration::ZERO));
        assert_eq!(
            Expiry::browser_session().max_age(T0 + Duration::hours(1), T0),
            None
        );
    }

    #[test]
    fn s32_refresh_is_throttled() {
        let e = Expiry::idle(Duration::minutes(40));
        assert!(!e.refresh_due(T0, T0 + Duration::minutes(9), 0.25));
        assert!(e.refresh_due(T0, T0 + Duration::minutes(10), 0.25));
        assert!(!Expiry::absolute(Duration::hours(1)).refresh_due(
            T0,
            T0 + Duration::hours(3),
            0.25
        ));
    }

    #[test]
    fn serde_round_trip_is_compact() {
        let e = Expiry::idle(Duration::minutes(1)).with_absolute(Duration::hours(1));
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, r#"{"i":60,"a":3600,"p":true}"#);
        assert_eq!(serde_json::from_str::<Expiry>(&json).unwrap(), e);
    }

    #[test]
    fn unix_times_saturate_at_the_ends_of_offset_date_time() {
        assert_eq!(
            to_datetime(MAX_UNIX),
            OffsetDateTime::new_utc(time::Date::MAX, time::Time::MAX)
                .replace_nanosecond(0)
                .unwrap()
        );
        assert_eq!(
            to_datetime(MIN_UNIX),
            OffsetDateTime::new_utc(time::Date::MIN, time::Time::MIDNIGHT)
        );
        assert_eq!(to_datetime(i64::MAX), to_datetime(MAX_UNIX));
        assert_eq!(to_datetime(i64::MIN), to_datetime(MIN_UNIX));
        let forever = Expiry::idle(Duration::MAX);
        assert_eq!(forever.deadline_at(0, i64::MAX - 5), MAX_UNIX);
    }

    fn any_expiry() -> impl Strategy<Value = Expiry> {
        let secs = || prop::option::of(1i64..=800 * 86_400).prop_map(|d| d.map(Duration::seconds));
        (secs(), secs(), any::<bool>()).prop_map(|(idle, absolute, persistent)| Expiry {
            idle,
            absolute,
            persistent,
        })
    }

    proptest! {
        /// The rules the layer runs on unix seconds are the public ones.
        #[test]
        fn unix_rules_are_the_public_rules(
            e in any_expiry(),
            created in 0i64..4_102_444_800,
            later in 0i64..=900 * 86_400,
            gap in -86_400i64..=900 * 86_400,
            fraction in prop::sample::select(vec![0.0, 0.25, 0.5, 1.0]),
        ) {
            let last = created + later;
            let now = last + gap;
            let at = |t: i64| OffsetDateTime::from_unix_timestamp(t).unwrap();
            let deadline = e.deadline_at(created, last);
            prop_assert_eq!(at(deadline), e.deadline(at(created), at(last)));
            prop_assert_eq!(e.max_age_at(deadline, now), e.max_age(at(deadline), at(now)));
            prop_assert_eq!(e.refresh_due_at(last, now, fraction), e.refresh_due(at(last), at(now), fraction));
        }
    }
}
