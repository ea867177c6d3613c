//! A TCP proxy a test can cut: while cut, open connections are closed and new ones
//! are accepted and closed at once, as when the server behind it is down.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The proxy; dropping it stops it.
pub struct CutProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    open: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    /// Listens on a loopback port and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let (open, watch_open) = watch::channel(true);
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let accept = tokio::spawn(async move {
            let mut watch_open = watch_open;
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { continue };
                        if !*watch_open.borrow() {
                            drop(client);
                            continue;
                        }
                        connections.lock().expect("lock").spawn(forward(client, target));
                    }
                    changed = watch_open.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        if !*watch_open.borrow() {
                            // Aborting the tasks drops both sockets of every connection.
                            connections.lock().expect("lock").abort_all();
                        }
                    }
                }
            }
        });
        Self { addr, open, accept }
    }

    /// Closes every connection and refuses new ones until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn forward(mut client: TcpStream, target: SocketAddr) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
