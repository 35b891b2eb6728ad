//! [`SessionService`]: the request path (find, verify, load) and the
//! response path (commit, cookie, caching headers). Every store call the
//! layer makes is in this file.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{CACHE_CONTROL, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use time::OffsetDateTime;
use tower_service::Service;

use crate::clock::now_seconds;
use crate::cookie::cookie_values;
use crate::error::{StoreError, StoreErrorKind};
use crate::expiry::Expiry;
use crate::future::ResponseFuture;
use crate::id::{IdHash, SessionId};
use crate::layer::Shared;
use crate::session::{Loaded, Session, State};
use crate::store::{Changes, Data, Record};

/// At most this many verified ids of one request are looked up (S20); a
/// client holds one or two, and every one of them costs a store call.
const MAX_CANDIDATES: usize = 4;
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
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The clone may not be ready; the one that `poll_ready` readied is.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::new(Box::pin(handle(self.shared.clone(), inner, req)))
    }
}

async fn handle<S, ReqBody, ResBody>(
    shared: Arc<Shared>,
    mut inner: S,
    mut req: Request<ReqBody>,
) -> Result<Response<ResBody>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    let now = now_seconds(&*shared.clock);
    let mut state = State {
        default_expiry: shared.expiry,
        now: Some(now),
        ..State::default()
    };
    match shared.load(req.headers(), now).await {
        Ok(Some((loaded, record))) => {
            state.loaded = Some(loaded);
            state.data = record.data;
            state.expiry = record.expiry;
        }
        Ok(None) => {}
        Err(error) => return Ok(shared.error_response(error)),
    }
    let session = Session::new(state);
    req.extensions_mut().insert(session.clone());

    let res = inner.call(req).await?;

    let state = session.take_state();
    let accessed = state.accessed;
    let mut res = match shared.commit(state, res.status(), now).await {
        Ok(cookie) => {
            let mut res = res;
            if let Some(cookie) = cookie {
                shared.set_cookie(res.headers_mut(), cookie);
            }
            res
        }
        Err(error) => shared.error_response(error),
    };
    if accessed {
        add_vary_cookie(res.headers_mut());
    }
    Ok(res)
}

impl Shared {
    /// Runs one store call under the store timeout (S36).
    async fn call<T>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.store_timeout, fut)
            .await
            .map_err(|_| StoreError::timeout())?
    }

    /// Finds the first candidate id that resolves to a live session (S6-S8,
    /// S19-S22). Unverified values never reach the store.
    async fn load(
        &self,
        headers: &HeaderMap,
        now: OffsetDateTime,
    ) -> Result<Option<(Loaded, Record)>, StoreError> {
        let mut tried: [Option<IdHash>; MAX_CANDIDATES] = [None; MAX_CANDIDATES];
        let verified =
            cookie_values(headers, &self.cookie.name).filter_map(|value| self.codec.verify(value));
        for (slot, candidate) in verified.take(MAX_CANDIDATES).enumerate() {
            let hash = candidate.id.hash();
            if tried.contains(&Some(hash)) {
                continue;
            }
            tried[slot] = Some(hash);
            let record = match self.call(self.store.load(&hash)).await {
                Ok(Some(record)) => record,
                Ok(None) => continue,
                Err(error) if error.kind() == StoreErrorKind::Decode => {
                    tracing::warn!(session = %hash, %error, "undecodable session record; treating it as absent");
                    continue;
                }
                Err(error) => return Err(error),
            };
            // The record's own deadline, and never later than what the
            // current policy allows (a shortened timeout applies at once).
            let expiry = record.expiry.unwrap_or(self.expiry);
            let expires_at = record
                .expires_at
                .min(expiry.deadline(record.created_at, record.last_active));
            if expires_at <= now {
                continue;
            }
            let loaded = Loaded {
                id: candidate.id,
                hash,
                created_at: record.created_at,
                last_active: record.last_active,
                expires_at,
                resign: candidate.by_fallback,
            };
            return Ok(Some((loaded, record)));
        }
        Ok(None)
    }

    /// Writes what the request did to the store (S23-S28) and returns the
    /// `Set-Cookie` value to send, if any. The response waits for this (S26).
    async fn commit(
        &self,
        state: State,
        status: StatusCode,
        now: OffsetDateTime,
    ) -> Result<Option<String>, StoreError> {
        if status.is_server_error() && !self.save_on_server_error {
            return Ok(None);
        }
        let expiry = state.effective_expiry();
        let Some(loaded) = state.loaded.clone() else {
            // No stored session: store one only if the handler wrote (S23).
            if state.data.is_empty() {
                return Ok(None);
            }
            return self.create_cookie(state, expiry, now).await.map(Some);
        };

        // Destroyed, or emptied: a session without data is not kept (S25).
        if state.destroyed || (state.data.is_empty() && (state.modified() || state.cycle)) {
            self.call(self.store.delete(&loaded.hash)).await?;
            if state.data.is_empty() {
                return Ok(Some(self.cookie.removal()));
            }
            // Values set after `destroy`: a new session, with a new id.
            return self.create_cookie(state, expiry, now).await.map(Some);
        }

        let deadline = expiry.deadline(loaded.created_at, now);
        if state.cycle {
            // Same data and creation time (the absolute timeout still counts
            // from the start) under a new id; the old id dies (S24).
            let mut record = new_record(state.data, now, deadline, state.expiry);
            record.created_at = loaded.created_at;
            let id = self.create(record).await?;
            self.call(self.store.delete(&loaded.hash)).await?;
            return Ok(Some(self.cookie_for(&id, expiry, deadline, now)));
        }

        if state.modified() {
            let send_cookie = expiry.is_persistent() || state.expiry_changed || loaded.resign;
            let changes = changes(state, now, deadline);
            if !self.call(self.store.save(&loaded.hash, &changes)).await? {
                // Destroyed or rotated by another request meanwhile: it stays
                // gone (S27). No cookie either: the other response's must win.
                tracing::debug!(session = %loaded.hash, "session ended by another request; changes dropped");
                return Ok(None);
            }
            return Ok(send_cookie.then(|| self.cookie_for(&loaded.id, expiry, deadline, now)));
        }

        // Read only: extend the idle window now and then (S32).
        if expiry.refresh_due(loaded.last_active, now, self.refresh_after) {
            let touched = self
                .call(self.store.touch(&loaded.hash, now, deadline))
                .await?;
            let send_cookie = touched && (expiry.is_persistent() || loaded.resign);
            return Ok(send_cookie.then(|| self.cookie_for(&loaded.id, expiry, deadline, now)));
        }
        // Signed under a fallback key: re-sign under the current one (S9).
        Ok(loaded
            .resign
            .then(|| self.cookie_for(&loaded.id, expiry, loaded.expires_at, now)))
    }

    /// Stores the request's data as a brand-new session and returns its cookie.
    async fn create_cookie(
        &self,
        state: State,
        expiry: Expiry,
        now: OffsetDateTime,
    ) -> Result<String, StoreError> {
        let deadline = expiry.deadline(now, now);
        let id = self
            .create(new_record(state.data, now, deadline, state.expiry))
            .await?;
        Ok(self.cookie_for(&id, expiry, deadline, now))
    }

    /// Stores `record` under a fresh id, insert-if-absent (S3).
    async fn create(&self, record: Record) -> Result<SessionId, StoreError> {
        for _ in 0..CREATE_ATTEMPTS {
            let id = self.ids.next().ok_or_else(|| {
                StoreError::backend("the id generator yielded fewer than 16 bytes")
            })?;
            if self.call(self.store.create(&id.hash(), &record)).await? {
                return Ok(id);
            }
            tracing::warn!("a new session id collided with a live one; trying another");
        }
        Err(StoreError::backend(
            "new session ids kept colliding: the id generator is broken",
        ))
    }

    fn cookie_for(
        &self,
        id: &SessionId,
        expiry: Expiry,
        deadline: OffsetDateTime,
        now: OffsetDateTime,
    ) -> String {
        self.cookie
            .set_cookie(self.codec.sign(id), expiry.max_age(deadline, now), now)
    }

    /// Adds our `Set-Cookie`, replacing any other of our name so there is
    /// exactly one (S17), and forbids caching the response (S37).
    fn set_cookie(&self, headers: &mut HeaderMap, cookie: String) {
        let ours = |v: &HeaderValue| {
            let name = v
                .as_bytes()
                .split(|&b| b == b'=')
                .next()
                .unwrap_or_default();
            name.trim_ascii() == self.cookie.name.as_bytes()
        };
        if headers.get_all(SET_COOKIE).iter().any(ours) {
            let others: Vec<HeaderValue> = headers
                .get_all(SET_COOKIE)
                .iter()
                .filter(|v| !ours(v))
                .cloned()
                .collect();
            headers.remove(SET_COOKIE);
            for v in others {
                headers.append(SET_COOKIE, v);
            }
        }
        match HeaderValue::try_from(cookie) {
            Ok(value) => {
                headers.append(SET_COOKIE, value);
            }
            // Unreachable: names, paths and domains are checked at build
            // time, and values are base64url.
            Err(error) => tracing::error!(%error, "session cookie is not a valid header value"),
        }
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }

    fn error_response<B: Default>(&self, error: StoreError) -> Response<B> {
        tracing::error!(%error, source = ?std::error::Error::source(&error), "session store call failed");
        let mut res = Response::new(B::default());
        *res.status_mut() = self.error_status;
        res.extensions_mut().insert(error);
        res
    }
}

fn add_vary_cookie(headers: &mut HeaderMap) {
    let present = headers.get_all(VARY).iter().any(|v| {
        v.to_str()
            .map(|v| {
                v.split(',')
                    .any(|t| t.trim() == "*" || t.trim().eq_ignore_ascii_case("cookie"))
            })
            .unwrap_or(false)
    });
    if !present {
        headers.append(VARY, HeaderValue::from_static("Cookie"));
    }
}

fn new_record(
    data: Data,
    now: OffsetDateTime,
    deadline: OffsetDateTime,
    expiry: Option<Expiry>,
) -> Record {
    Record {
        data,
        created_at: now,
        last_active: now,
        expires_at: deadline,
        expiry,
    }
}

/// The request's changes as the store applies them: after `clear`, every
/// value is new; otherwise each dirty key is either set or removed.
fn changes(mut state: State, now: OffsetDateTime, deadline: OffsetDateTime) -> Changes {
    let (mut set, mut removed) = (Vec::new(), Vec::new());
    if state.cleared {
        set = std::mem::take(&mut state.data).into_iter().collect();
    } else {
        for key in state.dirty {
            match state.data.remove(&key) {
                Some(value) => set.push((key, value)),
                None => removed.push(key),
            }
        }
    }
    Changes {
        cleared: state.cleared,
        set,
        removed,
        last_active: now,
        expires_at: deadline,
        expiry: state.expiry,
    }
}
