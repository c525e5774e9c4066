//! A streaming request body that fails once it passes a byte limit, and remembers that it did
//! so the proxy can answer `413` instead of a generic upstream error.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// The body passed the limit.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds {limit} bytes")]
pub(crate) struct TooLarge {
    pub(crate) limit: u64,
}

/// Set when a [`LimitedBody`] passed its limit.
#[derive(Clone, Default)]
pub(crate) struct OverLimitFlag(Arc<AtomicBool>);

impl OverLimitFlag {
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Streams `inner` through, failing with [`TooLarge`] past `limit` bytes.
pub(crate) struct LimitedBody<B> {
    inner: B,
    remaining: u64,
    limit: u64,
    flag: OverLimitFlag,
}

impl<B> LimitedBody<B> {
    pub(crate) fn new(inner: B, limit: u64) -> (Self, OverLimitFlag) {
        let flag = OverLimitFlag::default();
        (
            Self {
                inner,
                remaining: limit,
                limit,
                flag: flag.clone(),
            },
            flag,
        )
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > this.remaining {
                        this.flag.0.store(true, Ordering::Release);
                        return Poll::Ready(Some(Err(Box::new(TooLarge { limit: this.limit }))));
                    }
                    this.remaining -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    #[tokio::test]
    async fn under_limit_passes() {
        let (b, flag) = LimitedBody::new(Full::new(Bytes::from_static(b"hello")), 5);
        assert_eq!(b.collect().await.unwrap().to_bytes(), "hello");
        assert!(!flag.is_set());
    }

    #[tokio::test]
    async fn over_limit_fails_and_flags() {
        let chunks = futures::stream::iter(
            [b"abc".as_slice(), b"def".as_slice()]
                .map(|c| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(c)))),
        );
        let (b, flag) = LimitedBody::new(StreamBody::new(chunks), 5);
        let err = b.collect().await.unwrap_err();
        assert!(err.to_string().contains("exceeds 5 bytes"));
        assert!(flag.is_set());
    }
}
