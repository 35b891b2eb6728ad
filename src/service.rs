//! [`SessionService`]: the request path (find, verify, load) and the
//! response path (commit, cookie, caching headers). Every store call the
//! layer makes is in this file.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use http::header::Entry;
use http::header::{AUTHORIZATION, CACHE_CONTROL, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use time::Duration;
use tower_service::Service;

use crate::clock::now_seconds;
use crate::config::Transport;
use crate::cookie::cookie_values;
use crate::ended::ENDED;
use crate::error::{SessionError, StoreError, StoreErrorKind};
use crate::expiry::{to_datetime, Expiry, Unix};
use crate::future::ResponseFuture;
use crate::id::{IdHash, SessionId};
use crate::layer::{Backend, Shared};
use crate::session::{Abandon, Load, Loaded, Pending, Session, State};
use crate::store::cookie::{max_data, seal, unseal, CookieStore};
use crate::store::{Changes, Data, Record, SessionStore};
use crate::values::LoadedRecord;

/// At most this many distinct verified ids of one request are looked up
/// (S20). A browser sends one or two; every one costs a store call, so an
/// attacker's request cannot turn into many. Copies of one id count once.
/// Distinct dead-but-signed cookies tossed from a sibling subdomain could
/// push a live one past the cap: a `__Host-` cookie name stops tossing
/// altogether.
const MAX_CANDIDATES: usize = 8;
/// At most this many values of our name are verified per request: more
/// than a browser keeps for one site (about 180 cookies), few enough that a
/// header stuffed with fakes costs little.
const MAX_EXAMINED: usize = 256;
/// The longest the response of a page that never took its session waits
/// for the lookup that re-signs a fallback-key cookie (S9); past it, the
/// cookie is re-signed by a later request.
const LATE_LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(250);
/// A fresh id colliding with a live one means a broken generator; retry a
/// few times, then fail loudly (S3).
const CREATE_ATTEMPTS: usize = 3;

/// The middleware a [`SessionLayer`](crate::SessionLayer) wraps a service in.
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> SessionService<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        if !shared.inline() {
            // The clone may not be ready; the one that `poll_ready` readied is.
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            return ResponseFuture::boxed(Box::pin(handle(shared.clone(), inner, req)));
        }
        let now = now_seconds(&*shared.clock, shared.system_clock);
        // An inline backend's store never waits (see `Storage`): whatever
        // runs here is plain function calls, and nothing is boxed.
        let session = Session::new(shared.state(req.headers(), now));
        if shared.eager_load {
            if let Some(Err(error)) = session.load_in_place() {
                return ResponseFuture::ready(shared.error_response(error.into()));
            }
        }
        req.extensions_mut().insert(session.clone());
        ResponseFuture::inner(self.inner.call(req), session, shared.clone(), now)
    }
}

/// The request path for stores that do I/O: every step may wait.
async fn handle<S, ReqBody, ResBody>(
    shared: Arc<Shared>,
    mut inner: S,
    mut req: Request<ReqBody>,
) -> Result<Response<ResBody>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    let now = now_seconds(&*shared.clock, shared.system_clock);
    let session = Session::new(shared.state(req.headers(), now));
    if shared.eager_load {
        if let Err(error) = session.load().await {
            return Ok(shared.error_response(error.into()));
        }
    }
    req.extensions_mut().insert(session.clone());
    let abandon = Abandon::new(session.clone());

    let res = inner.call(req).await?;

    abandon.disarm();
    let mut state = session.take_state();
    if let Some(mut pending) = state.late_lookup(shared.commits(res.status())) {
        // For a page that did not use the session: not worth a long wait.
        let wait = LATE_LOOKUP_TIMEOUT.min(shared.store_timeout);
        let found = tokio::time::timeout(wait, shared.lookup(&mut pending.candidates, now))
            .await
            .unwrap_or_else(|_| Err(StoreError::timeout()));
        shared.late_loaded(&mut state, pending, found);
    }
    let accessed = state.accessed;
    // Most requests commit nothing: decide that here, and keep the commit
    // future (the largest part of this one) out of line, so the future
    // every request boxes and moves stays small (see BENCHMARKS.md).
    let outgoing = match shared.plan(&state, res.status(), now) {
        Plan::Nothing => Ok(None),
        plan => Box::pin(shared.commit(plan, state, now)).await,
    };
    Ok(shared.finish(res, outgoing, accessed, now))
}

/// One verified id of a request; for cookie sessions, with the session
/// its cookie carried.
#[derive(Clone)]
pub(crate) struct Candidate {
    /// Its hash, the store key, is taken when it is looked up: a page that
    /// never asks for its session computes none.
    id: SessionId,
    /// Boxed: most layers keep sessions in a store, and this is moved.
    sealed: Option<Box<Record>>,
    /// Verified under a fallback key (S9).
    resign: bool,
}

/// The distinct verified ids of a request, in the order the client sent
/// them, at most [`MAX_CANDIDATES`]. The first is kept in place: a browser
/// sends one.
#[derive(Clone)]
pub(crate) struct Candidates {
    first: Candidate,
    rest: Vec<Candidate>,
}

impl Candidate {
    pub(crate) fn id(&self) -> &SessionId {
        &self.id
    }
}

impl Candidates {
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Candidate> {
        std::iter::once(&self.first).chain(&self.rest)
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Candidate> {
        std::iter::once(&mut self.first).chain(&mut self.rest)
    }

    /// Whether any came under a fallback key.
    pub(crate) fn any_resign(&self) -> bool {
        self.iter().any(|c| c.resign)
    }

    /// Adds `candidate` unless its id is there already (copies of one id
    /// count once); `false` when the cap is reached.
    fn add(&mut self, candidate: Candidate) -> bool {
        let known = self.iter().any(|c| c.id == candidate.id);
        if !known {
            if 1 + self.rest.len() == MAX_CANDIDATES {
                return false;
            }
            self.rest.push(candidate);
        }
        true
    }
}

/// An inline backend's store call did not complete at once: a store
/// wrongly taken for one that never waits. Unreachable by construction
/// (`Storage` marks only the memory store and cookie sessions without a
/// revocation list); failing the request beats a hang or a panic.
fn not_inline() -> StoreError {
    StoreError::backend("a session store call that should complete at once did not")
}

/// A store that may wait, each call under the store timeout (S36): the
/// boxed path.
#[derive(Clone, Copy)]
struct Timed<'a>(&'a Shared, &'a dyn SessionStore);

impl Timed<'_> {
    async fn load(self, id: &IdHash) -> Result<Option<LoadedRecord>, StoreError> {
        Ok(self.0.call(self.1.load(id)).await?.map(LoadedRecord::from))
    }

    async fn create(self, id: &IdHash, record: &Record) -> Result<bool, StoreError> {
        self.0.call(self.1.create(id, record)).await
    }

    async fn save(self, id: &IdHash, changes: &Changes) -> Result<bool, StoreError> {
        self.0.call(self.1.save(id, changes)).await
    }

    async fn delete(self, id: &IdHash) -> Result<bool, StoreError> {
        self.0.call(self.1.delete(id)).await
    }

    async fn touch(
        self,
        id: &IdHash,
        last_active: Unix,
        expires_at: Unix,
    ) -> Result<bool, StoreError> {
        let (last_active, expires_at) = (to_datetime(last_active), to_datetime(expires_at));
        self.0.call(self.1.touch(id, last_active, expires_at)).await
    }
}

/// The memory store's own methods, called in place (they never wait); the
/// `i64` is the time they check expiry against.
#[cfg(feature = "memory-store")]
#[derive(Clone, Copy)]
struct Direct<'a>(&'a crate::MemoryStore, i64);

#[cfg(feature = "memory-store")]
impl Direct<'_> {
    fn load(self, id: &IdHash) -> Result<Option<LoadedRecord>, StoreError> {
        self.0.load_values_at(id, self.1)
    }

    fn create(self, id: &IdHash, record: &Record) -> Result<bool, StoreError> {
        self.0.create_at(id, record, self.1)
    }

    fn save(self, id: &IdHash, changes: &Changes) -> Result<bool, StoreError> {
        self.0.save_at(id, changes, self.1)
    }

    fn delete(self, id: &IdHash) -> Result<bool, StoreError> {
        self.0.delete_now(id)
    }

    fn touch(self, id: &IdHash, last_active: Unix, expires_at: Unix) -> Result<bool, StoreError> {
        self.0.touch_at(id, last_active, expires_at, self.1)
    }
}

/// Without the memory store, the in-place path serves cookie sessions only
/// and never has a store to call: this cannot be made.
#[cfg(not(feature = "memory-store"))]
#[derive(Clone, Copy)]
struct Direct<'a>(std::convert::Infallible, std::marker::PhantomData<&'a ()>);

#[cfg(not(feature = "memory-store"))]
impl Direct<'_> {
    fn load(self, _: &IdHash) -> Result<Option<LoadedRecord>, StoreError> {
        match self.0 {}
    }

    fn create(self, _: &IdHash, _: &Record) -> Result<bool, StoreError> {
        match self.0 {}
    }

    fn save(self, _: &IdHash, _: &Changes) -> Result<bool, StoreError> {
        match self.0 {}
    }

    fn delete(self, _: &IdHash) -> Result<bool, StoreError> {
        match self.0 {}
    }

    fn touch(self, _: &IdHash, _: Unix, _: Unix) -> Result<bool, StoreError> {
        match self.0 {}
    }
}

/// A store call of the session path, marked so that one body makes both
/// versions of it (see `store_path!`): awaited, or a plain call.
macro_rules! wait {
    (async, $call:expr) => {
        $call.await
    };
    (sync, $call:expr) => {
        $call
    };
}

/// A call through a store's trait object (a revocation list): under the
/// store timeout, or, in place, polled once; a call that would wait there
/// fails the request instead (see `not_inline`).
macro_rules! wait_io {
    (async, $shared:expr, $call:expr) => {
        $shared.call($call).await
    };
    (sync, $shared:expr, $call:expr) => {
        $call.now_or_never().unwrap_or_else(|| Err(not_inline()))
    };
}

/// The functions of the session path that call the store, written once and
/// made twice: `async` for stores that may wait (the boxed path, through
/// [`Timed`]), and plain functions for the in-place path (the memory
/// store through [`Direct`], cookie sessions without a revocation list),
/// which then builds and polls no future at all. The rules (S3, S7, S8,
/// S20, S24-S27, S32, S34) exist once; `wait!` marks every store call.
macro_rules! store_path {
    (
        $mode:tt [$($asyncness:tt)?] store: $Store:ty, handle: $handle:ident,
        lookup: $lookup:ident, commit: $commit:ident, stored: $stored:ident,
        sealed: $sealed:ident, create: $create:ident
    ) => {
        impl Shared {
            /// The first of the request's verified ids that names a live
            /// session (S6-S8, S20), in the order the client sent them.
            pub(crate) $($asyncness)? fn $lookup(
                &self,
                candidates: &mut Candidates,
                now: Unix,
            ) -> Result<Option<(Loaded, LoadedRecord)>, StoreError> {
                for candidate in candidates.iter_mut() {
                    let (id, resign) = (candidate.id, candidate.resign);
                    let hash = id.hash();
                    let record = match (&self.backend, candidate.sealed.take()) {
                        (Backend::Cookie(cookies), Some(record)) => match &cookies.revocations {
                            Some(revoked) if wait_io!($mode, self, revoked.load(&hash))?.is_some() => continue,
                            _ => LoadedRecord::from(*record),
                        },
                        (Backend::Store(store), _) => {
                            match wait!($mode, self.$handle(&**store, Some(now))?.load(&hash)) {
                                Ok(Some(record)) => record,
                                Ok(None) => continue,
                                Err(error) if error.kind() == StoreErrorKind::Decode => {
                                    tracing::warn!(session = %hash, %error, "undecodable session record; treating it as absent");
                                    continue;
                                }
                                Err(error) => return Err(error),
                            }
                        }
                        (Backend::Cookie(_), None) => continue,
                    };
                    // The record's own deadline, and never later than what the
                    // current policy allows (a shortened timeout applies at once).
                    let expiry = record.expiry.unwrap_or(self.expiry);
                    let expires_at = record
                        .expires_at
                        .min(expiry.deadline_at(record.created_at, record.last_active));
                    if expires_at <= now {
                        continue;
                    }
                    let loaded = Loaded {
                        id,
                        hash,
                        created_at: record.created_at,
                        last_active: record.last_active,
                        expires_at,
                        resign,
                    };
                    return Ok(Some((loaded, record)));
                }
                Ok(None)
            }

            /// Carries out `plan` (never `Plan::Nothing`) and says what to tell the
            /// client (`Plan::Refuse`: an error). The response waits for this (S26).
            $($asyncness)? fn $commit(
                &self,
                plan: Plan,
                state: State,
                now: Unix,
            ) -> Result<Option<Outgoing>, CommitError> {
                if plan == Plan::Refuse {
                    return Err(CommitError::Session(SessionError::not_loaded()));
                }
                match &self.backend {
                    Backend::Store(store) => {
                        wait!($mode, self.$stored(self.$handle(&**store, None)?, plan, state, now))
                    }
                    Backend::Cookie(cookies) => wait!($mode, self.$sealed(cookies, plan, state, now)),
                }
            }

            $($asyncness)? fn $stored(
                &self,
                store: $Store,
                plan: Plan,
                state: State,
                now: Unix,
            ) -> Result<Option<Outgoing>, CommitError> {
                let expiry = state.effective_expiry();
                let loaded = state.loaded.clone();
                let id_out = |id, deadline| Outgoing::Id {
                    id,
                    max_age: expiry.max_age_at(deadline, now),
                };
                let old = loaded.as_ref().map(|l| l.hash);
                match (plan, loaded) {
                    (Plan::End { then_create: false }, _) => {
                        if let Some(old) = old {
                            wait!($mode, store.delete(&old))?;
                            ENDED.insert(old, false);
                        }
                        Ok(Some(Outgoing::Removal))
                    }
                    (Plan::Create | Plan::End { .. }, _) => {
                        if let (Plan::End { .. }, Some(old)) = (plan, old) {
                            wait!($mode, store.delete(&old))?;
                            // Values set after `destroy`: a new session takes
                            // the old one's place, a rotation (a sign-in
                            // written as `destroy` then `insert`).
                            ENDED.insert(old, true);
                        }
                        // Values set after `destroy` start over: new id, new times.
                        let deadline = expiry.deadline_at(now, now);
                        let record = new_record(state.values.into_data(), now, now, deadline, state.expiry);
                        let id = wait!($mode, self.$create(store, record))?;
                        Ok(Some(id_out(id, deadline)))
                    }
                    (Plan::Cycle, Some(loaded)) => {
                        // The new id gets the record as it is now, with what
                        // requests saved since this one loaded (S34), and this
                        // request's own changes applied to the copy only: the
                        // old id is never written, so a failed cycle leaves it
                        // exactly as it was, and nothing a sign-in sets lands
                        // on the id from before it (S24). If the record is
                        // gone, another request destroyed or rotated it: it
                        // stays gone (S27).
                        let Some(current) = wait!($mode, store.load(&loaded.hash))? else {
                            tracing::debug!(session = %loaded.hash, "session ended by another request; not cycled");
                            return Ok(None);
                        };
                        // A request that changed something writes its expiry
                        // too, as a save does.
                        let (values, own_expiry) = if state.modified() {
                            (state.values.over(current.values), state.expiry)
                        } else {
                            (current.values, current.expiry)
                        };
                        let expiry = own_expiry.unwrap_or(self.expiry);
                        // The absolute timeout still counts from the first creation.
                        let deadline = expiry.deadline_at(loaded.created_at, now);
                        let record =
                            new_record(values.into_data(), loaded.created_at, now, deadline, own_expiry);
                        // The new id first, so a failed write leaves the old
                        // session in place. Then the old id dies; if it was
                        // already gone, another request ended this session
                        // meanwhile, and going on would undo that logout
                        // (S27): the new copy is removed again. Of two
                        // concurrent cycles, only the one whose delete removed
                        // the old id keeps its copy.
                        let id = wait!($mode, self.$create(store, record))?;
                        if !wait!($mode, store.delete(&loaded.hash))? {
                            tracing::debug!(session = %loaded.hash, "session ended by another request; not cycled");
                            wait!($mode, store.delete(&id.hash()))?;
                            return Ok(None);
                        }
                        ENDED.insert(loaded.hash, true);
                        Ok(Some(Outgoing::Id {
                            id,
                            max_age: expiry.max_age_at(deadline, now),
                        }))
                    }
                    (Plan::Save, Some(loaded)) => {
                        let deadline = expiry.deadline_at(loaded.created_at, now);
                        let send = expiry.is_persistent() || state.expiry_changed || loaded.resign;
                        if !wait!($mode, store.save(&loaded.hash, &changes(state, now, deadline)))? {
                            // Destroyed or rotated by another request meanwhile: it
                            // stays gone (S27), and no cookie: the other response's
                            // cookie must win.
                            tracing::debug!(session = %loaded.hash, "session ended by another request; changes dropped");
                            return Ok(None);
                        }
                        Ok(send.then(|| id_out(loaded.id, deadline)))
                    }
                    (Plan::Touch, Some(loaded)) => {
                        let deadline = expiry.deadline_at(loaded.created_at, now);
                        // A read-only request loses nothing if the refresh fails: the
                        // session stays as it was, and a later request refreshes it.
                        let touched = match wait!($mode, store.touch(&loaded.hash, now, deadline)) {
                            Ok(touched) => touched,
                            Err(error) => {
                                tracing::warn!(session = %loaded.hash, %error, "idle refresh failed; session left as it was");
                                false
                            }
                        };
                        let send = touched && (expiry.is_persistent() || loaded.resign);
                        Ok(send.then(|| id_out(loaded.id, deadline)))
                    }
                    (Plan::Resign, Some(loaded)) => Ok(Some(id_out(loaded.id, loaded.expires_at))),
                    (Plan::Nothing | Plan::Refuse | Plan::Cycle | Plan::Save | Plan::Touch | Plan::Resign, _) => Ok(None),
                }
            }

            /// Cookie sessions: every change is a new sealed cookie; ending a
            /// session records it in the revocation list, if there is one.
            $($asyncness)? fn $sealed(
                &self,
                cookies: &CookieStore,
                plan: Plan,
                state: State,
                now: Unix,
            ) -> Result<Option<Outgoing>, CommitError> {
                let expiry = state.effective_expiry();
                let Some(loaded) = state.loaded.clone() else {
                    // A sign-out that found its session gone (see `plan`).
                    if plan == (Plan::End { then_create: false }) {
                        return Ok(Some(Outgoing::Removal));
                    }
                    return self.seal(
                        SessionId::generate(),
                        expiry,
                        new_record(
                            state.values.into_data(),
                            now,
                            now,
                            expiry.deadline_at(now, now),
                            state.expiry,
                        ),
                        now,
                    );
                };
                let ends = matches!(plan, Plan::End { .. } | Plan::Cycle);
                if ends {
                    if let Some(revoked) = &cookies.revocations {
                        let marker = new_record(Data::new(), now, now, loaded.expires_at, None);
                        let first = wait_io!($mode, self, revoked.create(&loaded.hash, &marker))?;
                        // Already revoked: another request (or instance)
                        // ended this session since this one loaded it. A
                        // new id would bring it back (S27); a sign-out
                        // still sends its removal cookie.
                        if !first && plan == Plan::Cycle {
                            tracing::debug!(session = %loaded.hash, "session ended by another request; not cycled");
                            return Ok(None);
                        }
                    }
                }
                let (id, created_at) = match plan {
                    Plan::End { then_create: false } => {
                        ENDED.insert(loaded.hash, false);
                        return Ok(Some(Outgoing::Removal));
                    }
                    Plan::End { .. } => (SessionId::generate(), now),
                    Plan::Cycle => (SessionId::generate(), loaded.created_at),
                    _ => (loaded.id, loaded.created_at),
                };
                let (last_active, deadline) = match plan {
                    // Sealed again under the current key only (S9): the
                    // session's times stay, as a store session's do.
                    Plan::Resign => (loaded.last_active, loaded.expires_at),
                    _ => (now, expiry.deadline_at(created_at, now)),
                };
                let sealed = self.seal(
                    id,
                    expiry,
                    new_record(
                        state.values.into_data(),
                        created_at,
                        last_active,
                        deadline,
                        state.expiry,
                    ),
                    now,
                )?;
                // Noted once the end is sure to go out (see `crate::ended`);
                // a new session in its place is a rotation, as a sign-in.
                if ends {
                    ENDED.insert(loaded.hash, true);
                }
                Ok(sealed)
            }

            /// Stores `record` under a fresh id, insert-if-absent (S3).
            $($asyncness)? fn $create(&self, store: $Store, record: Record) -> Result<SessionId, StoreError> {
                for _ in 0..CREATE_ATTEMPTS {
                    let id = self.ids.next().ok_or_else(|| {
                        StoreError::backend("the id generator yielded fewer than 16 bytes")
                    })?;
                    if wait!($mode, store.create(&id.hash(), &record))? {
                        return Ok(id);
                    }
                    tracing::warn!("a new session id collided with a live one; trying another");
                }
                Err(StoreError::backend(
                    "new session ids kept colliding: the id generator is broken",
                ))
            }
        }
    };
}

store_path!(async [async] store: Timed<'_>, handle: timed, lookup: lookup, commit: commit,
    stored: commit_stored, sealed: commit_sealed, create: create);
store_path!(sync [] store: Direct<'_>, handle: direct, lookup: lookup_in_place,
    commit: commit_in_place, stored: commit_stored_in_place,
    sealed: commit_sealed_in_place, create: create_in_place);

/// What the response tells the client about its session.
#[derive(Debug)]
enum Outgoing {
    /// A signed id (server-side sessions).
    Id {
        id: SessionId,
        max_age: Option<Duration>,
    },
    /// A sealed session (cookie sessions).
    Sealed {
        value: String,
        max_age: Option<Duration>,
    },
    /// Drop the cookie or token.
    Removal,
}

/// What the response path does, decided once for both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// No write, no cookie (S23).
    Nothing,
    /// A brand-new session under a fresh id.
    Create,
    /// End the loaded session; start a new one if data was set after `destroy`.
    End { then_create: bool },
    /// New id, same data and creation time (S24).
    Cycle,
    /// Apply the request's changes (S34).
    Save,
    /// Extend the idle window of a read-only session (S32).
    Touch,
    /// Re-issue under the current key (S9).
    Resign,
    /// Commit nothing and fail: the handler used the session before it
    /// was loaded.
    Refuse,
}

/// The response path failed: the store, or a cookie session too large.
#[derive(Debug)]
enum CommitError {
    Store(StoreError),
    Session(SessionError),
}

impl From<StoreError> for CommitError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl Shared {
    /// Runs one store call under the store timeout (S36). A call that is
    /// ready on its first poll (an in-memory store) never arms the timer.
    async fn call<T>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let mut fut = std::pin::pin!(fut);
        let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        if let Poll::Ready(result) = first {
            return result;
        }
        tokio::time::timeout(self.store_timeout, fut)
            .await
            .map_err(|_| StoreError::timeout())?
    }

    /// The boxed path's way to call `store`, the layer's store.
    fn timed<'a>(
        &'a self,
        store: &'a dyn SessionStore,
        _now: Option<Unix>,
    ) -> Result<Timed<'a>, StoreError> {
        Ok(Timed(self, store))
    }

    /// The in-place path's way to call the layer's store: the memory store
    /// directly. `now`: the request's reading of the clock, for the lookup
    /// at its start; `None` on the response path, which must see a session
    /// that expired meanwhile as gone.
    fn direct<'a>(
        &'a self,
        _store: &'a dyn SessionStore,
        now: Option<Unix>,
    ) -> Result<Direct<'a>, StoreError> {
        #[cfg(feature = "memory-store")]
        if let Some(memory) = &self.memory {
            return Ok(Direct(memory, self.memory_now(memory, now)));
        }
        let _ = now;
        Err(not_inline())
    }

    /// The time the memory store checks expiry against: the request's own
    /// reading when there is one and the layer and the store both run on
    /// the system clock (one clock read fewer), otherwise the store's clock.
    #[cfg(feature = "memory-store")]
    fn memory_now(&self, memory: &crate::MemoryStore, now: Option<Unix>) -> Unix {
        memory.now_for(now.filter(|_| self.system_clock))
    }

    /// The ids the request carries whose signature holds (S7-S10, S20):
    /// values that fail never reach the store. For cookie sessions, each
    /// cookie is opened here.
    fn verified(&self, headers: &HeaderMap) -> Option<Candidates> {
        let mut found: Option<Candidates> = None;
        for value in self.candidates(headers).take(MAX_EXAMINED) {
            let opened = match &self.backend {
                Backend::Store(_) => self
                    .codec
                    .verify(value)
                    .map(|v| (v.id, None, v.by_fallback)),
                Backend::Cookie(_) => unseal(&self.cookie.name, self.codec.keys(), value)
                    .map(|(id, record, key)| (id, Some(Box::new(record)), key > 0)),
            };
            let Some((id, sealed, resign)) = opened else {
                continue;
            };
            let candidate = Candidate { id, sealed, resign };
            match &mut found {
                None => {
                    found = Some(Candidates {
                        first: candidate,
                        rest: Vec::new(),
                    })
                }
                Some(found) => {
                    if !found.add(candidate) {
                        break;
                    }
                }
            }
        }
        found
    }

    /// A request's session state before its lookup: the ids it carries,
    /// verified; the store is asked when the session is loaded.
    fn state(self: &Arc<Self>, headers: &HeaderMap, now: Unix) -> State {
        let load = match self.verified(headers) {
            Some(candidates) => Load::Pending(Box::new(Pending {
                shared: self.clone(),
                candidates,
            })),
            None => Load::Unasked,
        };
        State {
            load,
            ends_seen: ENDED.latest(),
            default_expiry: self.expiry,
            now: Some(now),
            refresh_after: self.refresh_after,
            max_data: match self.backend {
                Backend::Cookie(_) => Some(max_data(&self.cookie.name)),
                Backend::Store(_) => None,
            },
            ..State::default()
        }
    }

    /// The response path of an inline backend: plan, commit in place,
    /// headers. See [`ResponseFuture`].
    pub(crate) fn respond_inline<B: Default>(
        &self,
        session: &Session,
        res: Response<B>,
        now: Unix,
    ) -> Response<B> {
        let mut state = session.take_state();
        if let Some(mut pending) = state.late_lookup(self.commits(res.status())) {
            let found = self.lookup_in_place(&mut pending.candidates, now);
            self.late_loaded(&mut state, pending, found);
        }
        let accessed = state.accessed;
        let outgoing = match self.plan(&state, res.status(), now) {
            Plan::Nothing => Ok(None),
            plan => self.commit_in_place(plan, state, now),
        };
        self.finish(res, outgoing, accessed, now)
    }

    /// The response as it leaves: the session's cookie or token header, or
    /// the error response if the commit failed; `Vary` if it was read.
    fn finish<B: Default>(
        &self,
        res: Response<B>,
        outgoing: Result<Option<Outgoing>, CommitError>,
        accessed: bool,
        now: Unix,
    ) -> Response<B> {
        let mut res = match outgoing {
            Ok(outgoing) => {
                let mut res = res;
                if let Some(outgoing) = outgoing {
                    self.send(res.headers_mut(), outgoing, now);
                }
                res
            }
            Err(error) => self.error_response(error),
        };
        if accessed {
            self.add_vary(res.headers_mut());
        }
        res
    }

    /// The values the client sent in our transport, in order: every cookie
    /// of our name (S19-S22), or every token header. Nothing else is read:
    /// not the URL, not the body, not the other transport (S11).
    fn candidates<'a>(&'a self, headers: &'a HeaderMap) -> impl Iterator<Item = &'a [u8]> + 'a {
        let (cookies, tokens) = match &self.transport {
            Transport::Cookie => (Some(cookie_values(headers, &self.cookie.name)), None),
            Transport::Header { request, .. } => {
                (None, Some((request, headers.get_all(request).iter())))
            }
        };
        let tokens = tokens.into_iter().flat_map(|(name, values)| {
            let bearer = *name == AUTHORIZATION;
            values.filter_map(move |v| {
                let v = v.as_bytes().trim_ascii();
                if !bearer {
                    return Some(v);
                }
                let (scheme, token) = v.split_at(v.iter().position(|&b| b == b' ')?);
                scheme
                    .eq_ignore_ascii_case(b"bearer")
                    .then(|| token.trim_ascii())
            })
        });
        cookies.into_iter().flatten().chain(tokens)
    }

    /// Whether a response with `status` commits the session (S28).
    fn commits(&self, status: StatusCode) -> bool {
        !status.is_server_error() || self.save_on_server_error
    }

    /// Takes in a lookup made on the response path (see
    /// [`State::late_lookup`]). A failure costs the page nothing: the
    /// session is left as it is, to be re-signed by a later request.
    fn late_loaded(
        &self,
        state: &mut State,
        pending: Box<Pending>,
        found: Result<Option<(Loaded, LoadedRecord)>, StoreError>,
    ) {
        if let Err(error) = state.loaded(pending, found) {
            tracing::warn!(%error, "session under a fallback key not re-signed: the store failed");
        }
    }

    /// What the request's session needs (S23-S28, S32, S9). On 5xx nothing
    /// is saved by default (S28).
    fn plan(&self, state: &State, status: StatusCode, now: Unix) -> Plan {
        if state.unloaded_use {
            return Plan::Refuse;
        }
        if !self.commits(status) {
            return Plan::Nothing;
        }
        let Some(loaded) = &state.loaded else {
            // No stored session: store one only if the handler wrote (S23),
            // and not if the request's own session was ended or rotated by
            // another request since it was sent (S27, see `crate::ended`).
            return if state.destroyed && state.ended_meanwhile(false) {
                // A sign-out that found its session rotated away by a
                // sign-in meanwhile: the removal cookie still goes, so the
                // browser drops the newer one too.
                Plan::End {
                    then_create: !state.values.is_empty(),
                }
            } else if state.values.is_empty() {
                Plan::Nothing
            } else if state.ended_meanwhile(true) {
                tracing::debug!(
                    "session ended by another request before this one looked; changes dropped"
                );
                Plan::Nothing
            } else {
                Plan::Create
            };
        };
        // A sign-out is carried out even if another request ended the
        // session meanwhile: its removal cookie is what the user asked for.
        if state.destroyed {
            return Plan::End {
                then_create: !state.values.is_empty(),
            };
        }
        let plan = if state.ends() {
            // Emptied: a session without data is not kept (S25).
            Plan::End {
                then_create: !state.values.is_empty(),
            }
        } else if state.cycle {
            Plan::Cycle
        } else if state.modified() {
            Plan::Save
        } else if !state.looked_late && state.refresh_due(loaded.last_active, now) {
            Plan::Touch
        } else if loaded.resign {
            Plan::Resign
        } else {
            Plan::Nothing
        };
        // Ended or rotated by another request since this one started: what
        // this one did must not land, nor its cookie replace the other's
        // (S27). A store would refuse the write anyway; a cookie session
        // would be sealed again over the other response's cookie. Asked
        // only of a response that would commit something.
        if plan != Plan::Nothing && state.ended_meanwhile(true) {
            tracing::debug!(session = %loaded.hash, "session ended by another request meanwhile; changes dropped");
            return Plan::Nothing;
        }
        plan
    }

    fn seal(
        &self,
        id: SessionId,
        expiry: Expiry,
        record: Record,
        now: Unix,
    ) -> Result<Option<Outgoing>, CommitError> {
        let max_age = expiry.max_age_at(record.expires_at.unix_timestamp(), now);
        let value = seal(&self.cookie.name, &self.codec.keys()[0], id, record)
            .ok_or_else(|| CommitError::Session(SessionError::too_large()))?;
        Ok(Some(Outgoing::Sealed { value, max_age }))
    }

    /// Tells the client: one `Set-Cookie` of our name (S17), or the token
    /// header (S40); and forbids caching the response (S37).
    fn send(&self, headers: &mut HeaderMap, outgoing: Outgoing, now: Unix) {
        let (header, value) = match &self.transport {
            Transport::Cookie => {
                let value = match outgoing {
                    Outgoing::Id { id, max_age } => {
                        self.cookie.set_cookie(self.codec.sign(&id), max_age, now)
                    }
                    Outgoing::Sealed { value, max_age } => {
                        self.cookie.set_cookie(value, max_age, now)
                    }
                    Outgoing::Removal => self.cookie.removal(),
                };
                (SET_COOKIE, value)
            }
            Transport::Header { response, .. } => {
                let value = match outgoing {
                    Outgoing::Id { id, .. } => self.codec.sign(&id),
                    Outgoing::Removal => String::new(),
                    // Refused when the layer is built.
                    Outgoing::Sealed { .. } => return,
                };
                (response.clone(), value)
            }
        };
        match HeaderValue::try_from(value) {
            Ok(value) if header == SET_COOKIE => self.put_set_cookie(headers, value),
            Ok(value) => {
                headers.insert(header, value);
            }
            // Unreachable: names, paths and domains are checked at build
            // time, and values are base64.
            Err(error) => tracing::error!(%error, "session cookie is not a valid header value"),
        }
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }

    /// Adds our `Set-Cookie` as the only one of our name (S17): any that an
    /// inner layer or the handler added goes, every other cookie stays, in
    /// its order. One lookup of `Set-Cookie` when there is none yet.
    fn put_set_cookie(&self, headers: &mut HeaderMap, value: HeaderValue) {
        let ours = |v: &HeaderValue| {
            let name = v
                .as_bytes()
                .split(|&b| b == b'=')
                .next()
                .unwrap_or_default();
            name.trim_ascii() == self.cookie.name.as_bytes()
        };
        match headers.entry(SET_COOKIE) {
            Entry::Vacant(entry) => {
                entry.insert(value);
            }
            Entry::Occupied(mut entry) if entry.iter().any(ours) => {
                let others: Vec<HeaderValue> = entry.iter().filter(|v| !ours(v)).cloned().collect();
                let mut values = others.into_iter().chain([value]);
                // `insert` replaces every value with the first.
                if let Some(first) = values.next() {
                    entry.insert(first);
                }
                values.for_each(|v| entry.append(v));
            }
            Entry::Occupied(mut entry) => entry.append(value),
        }
    }

    /// The response depends on the session: caches must key on it (S38).
    fn add_vary(&self, headers: &mut HeaderMap) {
        let name = match &self.transport {
            Transport::Cookie => "Cookie",
            Transport::Header { request, .. } => request.as_str(),
        };
        let covers = |v: &HeaderValue| {
            v.to_str()
                .map(|v| {
                    v.split(',')
                        .any(|t| t.trim() == "*" || t.trim().eq_ignore_ascii_case(name))
                })
                .unwrap_or(false)
        };
        let value = || match &self.transport {
            Transport::Cookie => HeaderValue::from_static("Cookie"),
            Transport::Header { request, .. } => HeaderValue::from(request.clone()),
        };
        // One lookup of `Vary`, not one to look and one to add.
        match headers.entry(VARY) {
            Entry::Occupied(mut vary) => {
                if !vary.iter().any(covers) {
                    vary.append(value());
                }
            }
            Entry::Vacant(vary) => {
                vary.insert(value());
            }
        }
    }

    fn error_response<B: Default>(&self, error: CommitError) -> Response<B> {
        match error {
            CommitError::Store(error) => store_error_response(self.error_status, error),
            CommitError::Session(error) => {
                let mut res = Response::new(B::default());
                *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                tracing::error!(%error, "session could not be sent");
                res.extensions_mut().insert(error);
                res
            }
        }
    }
}

/// The answer when the store failed: the layer's error status, the error
/// in the response's extensions and in the log, nothing for the client.
pub(crate) fn store_error_response<B: Default>(
    status: StatusCode,
    error: StoreError,
) -> Response<B> {
    let mut res = Response::new(B::default());
    *res.status_mut() = status;
    tracing::error!(%error, source = ?std::error::Error::source(&error), "session store call failed");
    res.extensions_mut().insert(error);
    res
}

fn new_record(
    data: Data,
    created_at: Unix,
    now: Unix,
    deadline: Unix,
    expiry: Option<Expiry>,
) -> Record {
    Record {
        data,
        created_at: to_datetime(created_at),
        last_active: to_datetime(now),
        expires_at: to_datetime(deadline),
        expiry,
    }
}

/// The request's changes as the store applies them: after `clear`, every
/// value is new; otherwise each changed key is either set or removed.
fn changes(state: State, now: Unix, deadline: Unix) -> Changes {
    let cleared = state.values.cleared();
    let (set, removed) = state.values.into_changes();
    Changes {
        cleared,
        set,
        removed,
        last_active: to_datetime(now),
        expires_at: to_datetime(deadline),
        expiry: state.expiry,
    }
}
