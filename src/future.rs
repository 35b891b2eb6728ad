//! [`ResponseFuture`]: the future a [`SessionService`](crate::SessionService) returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use crate::expiry::Unix;
use crate::layer::Shared;
use crate::session::{Abandon, Session};

pub(crate) type BoxFuture<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

pin_project! {
    /// Loads the session, runs the inner service (its future is `F`), and
    /// commits the session before it yields the response.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        // A store that never waits (the memory store, cookie sessions): the
        // session was loaded in `call`, the inner service is running, and
        // the commit runs in place once it has answered. Nothing is boxed.
        Inner {
            #[pin]
            fut: F,
            session: Abandon,
            shared: Arc<Shared>,
            now: Unix,
        },
        // A store that does I/O: load, inner service and commit in one
        // boxed future.
        Boxed { fut: BoxFuture<B, E> },
        // Answered without the inner service: the store failed.
        Ready { res: Option<Response<B>> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(crate) fn inner(fut: F, session: Session, shared: Arc<Shared>, now: Unix) -> Self {
        Self {
            kind: Kind::Inner {
                fut,
                session: Abandon::new(session),
                shared,
                now,
            },
        }
    }

    pub(crate) fn boxed(fut: BoxFuture<B, E>) -> Self {
        Self {
            kind: Kind::Boxed { fut },
        }
    }

    pub(crate) fn ready(res: Response<B>) -> Self {
        Self {
            kind: Kind::Ready { res: Some(res) },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        const DONE: &str = "ResponseFuture polled after it completed";
        match self.project().kind.project() {
            KindProj::Inner {
                fut,
                session,
                shared,
                now,
            } => {
                let res = ready!(fut.poll(cx))?;
                let session = session.take().expect(DONE);
                Poll::Ready(Ok(shared.respond_inline(&session, res, *now)))
            }
            KindProj::Boxed { fut } => fut.as_mut().poll(cx),
            KindProj::Ready { res } => Poll::Ready(Ok(res.take().expect(DONE))),
        }
    }
}

impl<F, B, E> fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
