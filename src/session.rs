//! [`Session`]: the handle a handler reads and changes the session through.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use http::StatusCode;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::error::{SessionError, StoreError};
use crate::expiry::{to_datetime, Expiry, Unix};
use crate::id::{IdHash, SessionId};
use crate::layer::Shared;
use crate::service::Candidates;
#[cfg(test)]
use crate::store::Data;
use crate::values::LoadedRecord;
use crate::values::Values;

/// The session of the current request.
///
/// The layer puts one in the request's extensions; with the `axum` feature
/// it is also an extractor. Cloning is cheap and every clone is the same
/// session. Methods are synchronous and hold a lock only for the call, never
/// across an `.await`, so several handles in one handler cannot deadlock.
/// Changes are written to the store once the handler has returned and
/// before the response leaves; changes made after that are not saved.
///
/// The layer checks the cookie's signature on every request, but reads the
/// store only when a handler asks for the session: the extractor loads it
/// (one store call, under the store timeout), so a page that never takes a
/// `Session` costs no store call and does not extend the session's idle
/// time. Outside axum, call [`load`](Self::load) before the other methods,
/// or build the layer with
/// [`eager_load`](crate::SessionLayerBuilder::eager_load).
///
/// ```
/// # fn demo(session: session_layer::Session) -> Result<(), session_layer::SessionError> {
/// let visits: u64 = session.get("visits")?.unwrap_or(0);
/// session.insert("visits", visits + 1)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Held while a store that waits looks the session up, so that
    /// concurrent [`Session::load`] calls make one lookup.
    loading: tokio::sync::Mutex<()>,
}

/// Whether the request's session has been looked up.
#[derive(Debug, Default)]
pub(crate) enum Load {
    /// Looked up, or there was nothing to look up.
    #[default]
    Done,
    /// The request carried no verified id: nothing to look up, but the
    /// session is still to be loaded before use, as with one.
    Unasked,
    /// The response has been committed: the handle is empty for good.
    Committed,
    /// The request carried verified ids; the store has not been asked yet.
    Pending(Box<Pending>),
    /// Looked up: none of the request's verified ids names a live session.
    Missed(Box<Pending>),
    /// The lookup failed, and what the layer answers that with; the
    /// session cannot be used in this request.
    Failed(StoreError, StatusCode),
}

/// What a lookup needs: the layer, and the ids the request carried.
#[derive(Clone)]
pub(crate) struct Pending {
    pub(crate) shared: Arc<Shared>,
    pub(crate) candidates: Candidates,
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

/// The session that a request found in the store.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub(crate) id: SessionId,
    pub(crate) hash: IdHash,
    pub(crate) created_at: Unix,
    pub(crate) last_active: Unix,
    pub(crate) expires_at: Unix,
    /// The id came under a fallback key and is to be re-signed (S9).
    pub(crate) resign: bool,
}

/// Everything one request did to its session; the response path reads it.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) load: Load,
    /// A method was called before the session was loaded: the response
    /// refuses to commit anything.
    pub(crate) unloaded_use: bool,
    /// The process's count of ended sessions when the request started
    /// (see [`crate::ended`]).
    pub(crate) ends_seen: u64,
    /// Looked up by the response path only, to re-sign (S9): the page did
    /// not use the session, so nothing else is done to it.
    pub(crate) looked_late: bool,
    pub(crate) loaded: Option<Loaded>,
    /// The data as loaded, and what the request set, removed or cleared.
    pub(crate) values: Values,
    pub(crate) cycle: bool,
    pub(crate) destroyed: bool,
    pub(crate) expiry: Option<Expiry>,
    pub(crate) expiry_changed: bool,
    /// A handler looked at the session: the response varies by cookie (S38).
    pub(crate) accessed: bool,
    pub(crate) default_expiry: Expiry,
    pub(crate) now: Option<Unix>,
    /// The layer's `refresh_after`: when a read extends the idle deadline.
    pub(crate) refresh_after: f64,
    /// Cookie sessions: the most JSON the data may take (S15).
    pub(crate) max_data: Option<usize>,
}

impl State {
    /// Whether the handler changed data or expiry.
    pub(crate) fn modified(&self) -> bool {
        self.values.changed() || self.expiry_changed
    }

    pub(crate) fn effective_expiry(&self) -> Expiry {
        self.expiry.unwrap_or(self.default_expiry)
    }

    /// Whether the response ends the loaded session: destroyed, or left
    /// without data by a change or a cycle (S25). Values set after that
    /// start a new one.
    pub(crate) fn ends(&self) -> bool {
        self.destroyed || ((self.modified() || self.cycle) && self.values.is_empty())
    }

    /// Whether another request ended or rotated this request's session
    /// while this one was on its way (see [`crate::ended`]): then this one
    /// commits nothing but a sign-out. With `rotations`, a rotation just
    /// before this request arrived counts too, where the request would
    /// start a new session or re-seal a cookie session.
    pub(crate) fn ended_meanwhile(&self, rotations: bool) -> bool {
        let ended = &crate::ended::ENDED;
        match (&self.loaded, &self.load) {
            (Some(loaded), _) => ended.since(
                std::iter::once(loaded.hash),
                self.ends_seen,
                rotations && self.max_data.is_some(),
            ),
            (None, Load::Missed(pending)) => ended.since(
                pending.candidates.iter().map(|c| c.id().hash()),
                self.ends_seen,
                rotations,
            ),
            _ => false,
        }
    }

    /// Whether a read-only response at `now` extends the idle deadline of
    /// the session last active at `last_active` (S32).
    pub(crate) fn refresh_due(&self, last_active: Unix, now: Unix) -> bool {
        self.effective_expiry()
            .refresh_due_at(last_active, now, self.refresh_after)
    }

    /// Takes in what the lookup of `pending` found.
    pub(crate) fn loaded(
        &mut self,
        pending: Box<Pending>,
        found: Result<Option<(Loaded, LoadedRecord)>, StoreError>,
    ) -> Result<(), StoreError> {
        match found {
            Ok(Some((loaded, record))) => {
                self.load = Load::Done;
                self.loaded = Some(loaded);
                self.values = record.values;
                self.expiry = record.expiry;
                Ok(())
            }
            Ok(None) => {
                self.load = Load::Missed(pending);
                Ok(())
            }
            Err(error) => {
                self.load = Load::Failed(error.clone(), pending.shared.error_status);
                Err(error)
            }
        }
    }

    /// The lookup of a session that the handler never asked for, when the
    /// response needs it after all: a cookie under a fallback key is
    /// re-signed (S9), and re-signing a persistent cookie needs the stored
    /// deadline. Not for a response that commits nothing (5xx).
    pub(crate) fn late_lookup(&mut self, commits: bool) -> Option<Box<Pending>> {
        match &self.load {
            Load::Pending(pending) if commits && pending.candidates.any_resign() => {
                self.looked_late = true;
                match std::mem::take(&mut self.load) {
                    Load::Pending(pending) => Some(pending),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

impl Session {
    pub(crate) fn new(state: State) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                loading: tokio::sync::Mutex::const_new(()),
            }),
        }
    }

    /// Locks for one synchronous step. A panic in another handle's call
    /// cannot leave the state half-changed, so a poisoned lock is usable.
    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state for a method. Before the session is loaded there is
    /// nothing to read: the method sees an empty session, and the response
    /// commits nothing and fails (see [`load`](Self::load)).
    fn read(&self) -> MutexGuard<'_, State> {
        let mut state = self.state();
        // A failed load is not a mistake: the handler was told, and may
        // answer in its own way; `get` and `insert` still refuse.
        let unloaded = matches!(state.load, Load::Pending(_) | Load::Unasked);
        if unloaded && !state.unloaded_use {
            state.unloaded_use = true;
            tracing::error!(
                "a Session method was called before the session was loaded: \
                 call `Session::load().await` first, or build the layer with `eager_load(true)`; \
                 this response commits nothing"
            );
        }
        state.accessed = true;
        state
    }

    /// [`read`](Self::read) for methods that can say no.
    fn read_loaded(&self) -> Result<MutexGuard<'_, State>, SessionError> {
        let state = self.read();
        if state.unloaded_use || matches!(state.load, Load::Failed(..)) {
            Err(SessionError::not_loaded())
        } else if matches!(state.load, Load::Committed) {
            Err(SessionError::committed())
        } else {
            Ok(state)
        }
    }

    /// Looks the session up in the store, once per request; later calls,
    /// and calls on other handles of the same session, return at once with
    /// the same outcome. The axum extractor calls it (a failure becomes the
    /// layer's error response, 500 by default), and so does the layer itself
    /// with [`eager_load`](crate::SessionLayerBuilder::eager_load). Outside
    /// axum, call it before the other methods: before it, they see an empty
    /// session, `get` and `insert` fail with
    /// [`SessionErrorKind::NotLoaded`](crate::SessionErrorKind::NotLoaded),
    /// and the response commits nothing and is an error (500), also for a
    /// request without a session cookie.
    ///
    /// Each store call runs under the layer's store timeout. Once the
    /// response has been committed (a task that outlived its request),
    /// `load` has nothing to do and `get` and `insert` fail with
    /// [`SessionErrorKind::Committed`](crate::SessionErrorKind::Committed).
    pub async fn load(&self) -> Result<(), StoreError> {
        match self.load_in_place() {
            Some(done) => done,
            // Out of line: this future is part of every handler's.
            None => Box::pin(self.look_up()).await,
        }
    }

    /// [`load`](Self::load) from a store that waits: one lookup at a time.
    /// A lookup that is dropped half-way leaves the session to look up,
    /// for the next call.
    async fn look_up(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.inner.loading.lock().await;
        let (mut pending, now) = {
            let state = self.state();
            match &state.load {
                Load::Done | Load::Missed(_) | Load::Unasked | Load::Committed => return Ok(()),
                Load::Failed(error, _) => return Err(error.clone()),
                Load::Pending(pending) => (pending.clone(), state.now.unwrap_or_default()),
            }
        };
        let found = pending.shared.lookup(&mut pending.candidates, now).await;
        let mut state = self.state();
        match state.load {
            Load::Pending(_) => state.loaded(pending, found),
            // The response was committed meanwhile: there is nothing to fill.
            _ => Ok(()),
        }
    }

    /// The outcome of [`load`](Self::load), when it needs no waiting: the
    /// session was looked up already, or its store never waits.
    pub(crate) fn load_in_place(&self) -> Option<Result<(), StoreError>> {
        let mut state = self.state();
        match &state.load {
            Load::Done | Load::Missed(_) | Load::Committed => Some(Ok(())),
            Load::Unasked => {
                state.load = Load::Done;
                Some(Ok(()))
            }
            Load::Failed(error, _) => Some(Err(error.clone())),
            Load::Pending(pending) if pending.shared.inline() => {
                let Load::Pending(mut pending) = std::mem::take(&mut state.load) else {
                    unreachable!("matched above")
                };
                let now = state.now.unwrap_or_default();
                let found = pending.shared.lookup_in_place(&mut pending.candidates, now);
                Some(state.loaded(pending, found))
            }
            Load::Pending(_) => None,
        }
    }

    /// The status the layer answers this request's failed lookup with.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn error_status(&self) -> StatusCode {
        match self.state().load {
            Load::Failed(_, status) => status,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Marks the session committed without committing it: its response
    /// was dropped (a timeout around the service, a client that went away).
    fn abandon(&self) {
        drop(self.take_state());
    }

    /// Takes the request's state out for the response path; the handle is
    /// empty from then on.
    pub(crate) fn take_state(&self) -> State {
        let committed = State {
            load: Load::Committed,
            ..State::default()
        };
        std::mem::replace(&mut *self.state(), committed)
    }

    /// The value under `key`, deserialized; `Ok(None)` if there is none, an
    /// error if it has another type.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        self.read_loaded()?
            .values
            .get(key)
            .map(|v| v.map_err(SessionError::deserialize))
            .transpose()
    }

    /// The raw JSON value under `key`.
    pub fn get_value(&self, key: &str) -> Option<Value> {
        self.read().values.get_value(key)
    }

    /// Stores `value` under `key`. Setting the value a key already has
    /// changes nothing and writes nothing. With cookie sessions, a value
    /// that would make the session too large for one cookie is refused
    /// with [`SessionErrorKind::TooLarge`](crate::SessionErrorKind::TooLarge)
    /// and the session stays as it was (S15). A value nested deeper than
    /// [`MAX_NESTING`] arrays and objects is refused with
    /// [`SessionErrorKind::Serialize`](crate::SessionErrorKind::Serialize):
    /// it could not be read back.
    pub fn insert(&self, key: &str, value: impl Serialize) -> Result<(), SessionError> {
        let value = serde_json::to_value(value).map_err(SessionError::serialize)?;
        if nesting_exceeds(&value, MAX_NESTING) {
            return Err(SessionError::serialize(serde::ser::Error::custom(
                format_args!("the value is nested deeper than {MAX_NESTING} arrays and objects"),
            )));
        }
        let mut state = self.read_loaded()?;
        let Some(undo) = state.values.set(key, value) else {
            return Ok(());
        };
        if let Some(max) = state.max_data {
            let data = state.values.to_data();
            let len = serde_json::to_vec(&data).map_or(usize::MAX, |json| json.len());
            if len > max {
                state.values.unset(key, undo);
                return Err(SessionError::too_large());
            }
        }
        Ok(())
    }

    /// Removes `key`, returning its value if it had one. Removing the last
    /// value ends the session at the end of the request, as
    /// [`clear`](Self::clear) does.
    pub fn remove(&self, key: &str) -> Option<Value> {
        self.read().values.remove(key)
    }

    /// Removes every key. Values inserted afterwards in the same request
    /// stay in the same session (same id and expiry). A session left with
    /// no values at the end of the request is not kept: it ends as with
    /// [`destroy`](Self::destroy), record deleted and cookie removed.
    pub fn clear(&self) {
        let mut state = self.read();
        if state.loaded.is_some() || !state.values.is_empty() {
            state.values.clear();
        }
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &str) -> bool {
        self.read().values.contains_key(key)
    }

    /// The keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.read().values.keys()
    }

    /// Whether the session holds no value.
    pub fn is_empty(&self) -> bool {
        self.read().values.is_empty()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.read().values.len()
    }

    /// The hash of the session's id (safe to log or show), or `None` for a
    /// session that is not stored yet. After [`cycle_id`](Self::cycle_id)
    /// the new id exists only once the response is on its way.
    pub fn id(&self) -> Option<IdHash> {
        self.read().loaded.as_ref().map(|l| l.hash)
    }

    /// Gives the session a new id, keeping its data; the old id stops
    /// working. Call it on every privilege change: sign-in (also a repeated
    /// sign-in of the same user), sign-out to a lower role, sudo (S24). This
    /// is what defeats session fixation.
    pub fn cycle_id(&self) {
        let mut state = self.read();
        if !state.destroyed {
            state.cycle = true;
        }
    }

    /// Ends the session: the record is deleted and the client is told to
    /// drop the cookie (S25). Values inserted afterwards in the same request
    /// start a new session with a new id.
    pub fn destroy(&self) {
        let mut state = self.read();
        state.destroyed = true;
        state.cycle = false;
        // Nothing of the old session counts; values set from here on are new.
        state.values = Values::default();
    }

    /// Gives this session its own expiry (e.g. "remember me"); `None` goes
    /// back to the layer's. Kept in the record for later requests.
    pub fn set_expiry(&self, expiry: Option<Expiry>) {
        let mut state = self.read();
        if state.expiry != expiry {
            state.expiry = expiry;
            state.expiry_changed = true;
        }
    }

    /// The expiry policy in force for this session.
    pub fn expiry(&self) -> Expiry {
        self.read().effective_expiry()
    }

    /// When the session will end if nothing else happens: the deadline that
    /// this response leaves it with, by the same rules the layer commits by
    /// (a save, `cycle_id`, an idle refresh or a re-seal start the idle
    /// window again); `None` when there is no session and nothing to store,
    /// or when the response ends it (`destroy`, or every value removed).
    /// It assumes the response commits: on a 5xx (nothing is saved by
    /// default) or a refresh the store fails, the stored deadline stays.
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        let state = self.read();
        let now = state.now?;
        let expiry = state.effective_expiry();
        // By the rules `plan` decides by.
        if !state.ends() && state.ended_meanwhile(true) {
            // This response commits nothing (see `ended_meanwhile`).
            return None;
        }
        match &state.loaded {
            Some(l) if !state.ends() => {
                let active_now =
                    state.modified() || state.cycle || state.refresh_due(l.last_active, now);
                Some(if active_now {
                    expiry.deadline_at(l.created_at, now)
                } else {
                    l.expires_at
                })
            }
            _ if !state.values.is_empty() => Some(expiry.deadline_at(now, now)),
            _ => None,
        }
        .map(to_datetime)
    }
}

/// The request's session until its response commits it. If the response
/// future is dropped first, the session is marked committed, so that a
/// handle kept elsewhere (a spawned task) cannot go on changing it unseen:
/// `get` and `insert` fail with
/// [`SessionErrorKind::Committed`](crate::SessionErrorKind::Committed).
pub(crate) struct Abandon(Option<Session>);

impl Abandon {
    pub(crate) fn new(session: Session) -> Self {
        Self(Some(session))
    }

    /// The session, for its commit: from here on the commit owns it.
    pub(crate) fn take(&mut self) -> Option<Session> {
        self.0.take()
    }

    /// The response goes on to its commit: nothing to do on drop.
    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(session) = self.0.take() {
            session.abandon();
        }
    }
}

/// How deeply a session value may nest arrays and objects. Every store
/// must give it back: MariaDB 10.11's JSON functions handle 32 levels (and
/// return NULL or `null` past them, without an error), serde_json reads
/// back 127, and stores nest a session's values one or two levels deeper
/// (in the data object, in a cookie session's record). A deeper value
/// would be lost or make the whole record unreadable on its next load
/// (S35); the store conformance suite checks this depth on every backend.
pub const MAX_NESTING: usize = 30;

/// Whether `value` nests more than `limit` arrays and objects; without
/// recursion, so a pathological value cannot exhaust the stack here.
fn nesting_exceeds(value: &Value, limit: usize) -> bool {
    if !matches!(value, Value::Array(_) | Value::Object(_)) {
        return false;
    }
    let mut stack = vec![(value, 1usize)];
    while let Some((value, depth)) = stack.pop() {
        let children: &mut dyn Iterator<Item = &Value> = match value {
            Value::Array(items) => &mut items.iter(),
            Value::Object(members) => &mut members.values(),
            _ => continue,
        };
        if depth > limit {
            return true;
        }
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    false
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Session")
            .field("id", &state.loaded.as_ref().map(|l| l.hash))
            .field("keys", &state.values.len())
            .field("modified", &state.modified())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session::new(State::default())
    }

    #[test]
    fn typed_access_and_serde_errors() {
        let s = session();
        s.insert("n", 3u32).unwrap();
        assert_eq!(s.get::<u32>("n").unwrap(), Some(3));
        assert!(s.get::<String>("n").is_err());
        assert_eq!(s.get::<u32>("missing").unwrap(), None);
        assert_eq!(s.keys(), ["n"]);
        assert!(s.contains_key("n") && !s.is_empty() && s.len() == 1);
        assert_eq!(s.remove("n"), Some(Value::from(3)));
        assert!(s.is_empty());
    }

    #[test]
    fn setting_the_same_value_is_no_change() {
        let s = Session::new(State {
            values: Values::from_map(Data::from_iter([("n".into(), 1.into())])),
            ..State::default()
        });
        s.insert("n", 1).unwrap();
        assert!(!s.take_state().modified());
    }

    #[test]
    fn two_handles_share_one_state_without_deadlock() {
        let a = session();
        let b = a.clone();
        a.insert("k", "v").unwrap();
        // A read through one handle while the other's value is alive.
        let from_b: Option<String> = b.get("k").unwrap();
        a.insert("k2", from_b).unwrap();
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn s15_an_insert_past_the_size_limit_is_refused_and_changes_nothing() {
        let s = Session::new(State {
            max_data: Some(100),
            ..State::default()
        });
        s.insert("a", "x".repeat(50)).unwrap();
        let err = s.insert("a", "x".repeat(200)).unwrap_err();
        assert_eq!(err.kind(), crate::SessionErrorKind::TooLarge);
        assert_eq!(s.get::<String>("a").unwrap().unwrap().len(), 50);
        assert!(s.insert("b", "y".repeat(200)).is_err());
        assert_eq!(s.keys(), ["a"]);
    }

    #[test]
    fn destroy_then_insert_starts_over() {
        let s = session();
        s.insert("a", 1).unwrap();
        s.cycle_id();
        s.destroy();
        s.cycle_id();
        s.insert("flash", "bye").unwrap();
        let state = s.take_state();
        assert!(state.destroyed && !state.cycle);
        let (set, removed) = state.values.into_changes();
        assert_eq!(set, [("flash".to_owned(), Value::from("bye"))]);
        assert!(removed.is_empty());
    }
}
