//! Connections that a handler can cut: the `close` ambiguous-create fault resets the TCP
//! connection after the ticket was committed, so the client gets no answer at all — not even a
//! status line — exactly like a load balancer or NAT dropping the connection mid-request.
//!
//! The listener wraps every accepted socket in a [`CuttableStream`] and hands requests a
//! [`ConnHandle`] (through axum's `ConnectInfo`). [`ConnHandle::cut`] flags the connection; the
//! next read or write on it sets `SO_LINGER` to zero and fails, so hyper abandons the connection
//! without writing the response and the socket is closed with a TCP reset.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A TCP listener whose connections can be cut by the handlers serving them.
pub(crate) struct CuttableListener(pub TcpListener);

impl Listener for CuttableListener {
    type Io = CuttableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    return (
                        CuttableStream {
                            inner: stream,
                            cut: Arc::new(AtomicBool::new(false)),
                        },
                        addr,
                    );
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// An accepted socket that fails every read and write once its connection has been cut.
pub(crate) struct CuttableStream {
    inner: TcpStream,
    cut: Arc<AtomicBool>,
}

impl CuttableStream {
    /// `Some(error)` once cut; arranges for the socket to close with a reset, not a FIN.
    fn cut_error(&self) -> Option<io::Error> {
        if !self.cut.load(Ordering::Acquire) {
            return None;
        }
        if let Err(e) = self.inner.set_zero_linger() {
            tracing::debug!(error = %e, "cannot set SO_LINGER 0; the cut connection closes with a FIN");
        }
        Some(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "connection cut by the simulator",
        ))
    }
}

impl AsyncRead for CuttableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.cut_error() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CuttableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.cut_error() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.cut_error() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.cut_error() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.cut_error() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// What a request knows about its connection: enough to cut it.
#[derive(Clone, Debug)]
pub(crate) struct ConnHandle {
    cut: Arc<AtomicBool>,
}

impl ConnHandle {
    /// Marks the connection so that it is reset instead of answered.
    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::Release);
    }
}

impl Connected<IncomingStream<'_, CuttableListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, CuttableListener>) -> Self {
        ConnHandle {
            cut: Arc::clone(&stream.io().cut),
        }
    }
}
