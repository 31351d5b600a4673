//! TCP over tokio-uring: connect (tokio TcpSocket under a timeout, then handed to
//! tokio-uring), reads and writes under deadlines, shutdown-before-drop on timeouts.

/// A connected tokio-uring TCP stream that is shut down before it is dropped whenever an
/// operation on it timed out (tokio-uring does not cancel in-flight ops).
pub struct TcpConn {
    _private: (),
}
