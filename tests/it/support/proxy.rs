//! A TCP fault proxy for tests: it sits between the service and the simulator (or
//! PostgreSQL) on a loopback port and can reset every connection, black-hole them,
//! slice the downstream bytes into tiny delayed pieces, or cut connections short
//! after a number of downstream bytes.
//!
//! One task accepts; one task per connection copies both directions and watches the
//! mode and the reset generation, so a change applies at once to open connections.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the proxy does to the bytes it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Copy everything as it comes.
    Pass,
    /// Accept connections and bytes but forward nothing, and send no FIN: the peer
    /// sees a silent, open connection (until the mode changes).
    BlackHole,
    /// Forward downstream bytes (server to client) in pieces of `bytes`, `delay` apart.
    Slice {
        /// Bytes per piece.
        bytes: usize,
        /// Pause after each piece.
        delay: Duration,
    },
    /// Refuse service: open connections are reset and new ones are reset as soon as
    /// they are accepted, as a stopped server's host would answer.
    Refuse,
    /// Close a connection (both ways) once `bytes` downstream bytes went through it,
    /// in the middle of whatever the server was sending.
    CutShort {
        /// Downstream bytes a connection carries before it is cut.
        bytes: u64,
    },
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    resets: watch::Sender<u64>,
    accepted: Arc<AtomicU64>,
    cuts: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let (mode, _) = watch::channel(Mode::Pass);
        let (resets, _) = watch::channel(0u64);
        let accepted = Arc::new(AtomicU64::new(0));
        let cuts = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let context = Connection {
            upstream,
            mode: mode.subscribe(),
            resets: resets.subscribe(),
            cuts: Arc::clone(&cuts),
            stop: stop.clone(),
        };
        let counter = Arc::clone(&accepted);
        let accept_stop = stop.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    () = accept_stop.cancelled() => return,
                };
                let Ok((client, _)) = accepted else { continue };
                counter.fetch_add(1, Ordering::Relaxed);
                let mut connection = context.clone();
                tokio::spawn(async move { connection.run(client).await });
            }
        });
        Self {
            addr,
            mode,
            resets,
            accepted,
            cuts,
            stop,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches the mode for open and new connections.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
        if mode == Mode::Refuse {
            self.reset_all();
        }
    }

    /// Resets every open connection (RST, no FIN). New connections work as before.
    pub fn reset_all(&self) {
        self.resets.send_modify(|generation| *generation += 1);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections cut short so far.
    pub fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[derive(Clone)]
struct Connection {
    upstream: SocketAddr,
    mode: watch::Receiver<Mode>,
    resets: watch::Receiver<u64>,
    cuts: Arc<AtomicU64>,
    stop: CancellationToken,
}

/// How a connection ended.
enum End {
    /// Either side closed, or it was cut short: close normally.
    Closed,
    /// A reset was asked for: abort with RST.
    Reset,
}

impl Connection {
    async fn run(&mut self, mut client: TcpStream) {
        // Connections made before the latest reset are not reset by it again.
        self.resets.borrow_and_update();
        if *self.mode.borrow() == Mode::Refuse {
            abort(&client);
            return;
        }
        let Ok(mut server) = TcpStream::connect(self.upstream).await else {
            abort(&client);
            return;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let end = self.copy(&mut client, &mut server).await;
        if let End::Reset = end {
            abort(&client);
            abort(&server);
        }
    }

    async fn copy(&mut self, client: &mut TcpStream, server: &mut TcpStream) -> End {
        let mut up = vec![0u8; 16 * 1024];
        let mut down = vec![0u8; 16 * 1024];
        let mut downstream_bytes = 0u64;
        loop {
            tokio::select! {
                read = client.read(&mut up) => {
                    let Ok(count) = read else { return End::Reset };
                    if count == 0 {
                        return End::Closed;
                    }
                    if let Err(end) = self.forward(server, &up[..count], false).await {
                        return end;
                    }
                }
                read = server.read(&mut down) => {
                    let Ok(count) = read else { return End::Reset };
                    if count == 0 {
                        return End::Closed;
                    }
                    let mut chunk = &down[..count];
                    let mut cut = false;
                    if let Mode::CutShort { bytes } = *self.mode.borrow() {
                        let left = bytes.saturating_sub(downstream_bytes);
                        if (chunk.len() as u64) >= left {
                            chunk = &chunk[..usize::try_from(left).unwrap_or(chunk.len())];
                            cut = true;
                        }
                    }
                    downstream_bytes += chunk.len() as u64;
                    if let Err(end) = self.forward(client, chunk, true).await {
                        return end;
                    }
                    if cut {
                        self.cuts.fetch_add(1, Ordering::Relaxed);
                        return End::Closed;
                    }
                }
                _ = self.resets.changed() => return End::Reset,
                () = self.stop.cancelled() => return End::Reset,
            }
        }
    }

    /// Writes `bytes` to `to` as the mode says; waits while black-holed.
    async fn forward(
        &mut self,
        to: &mut TcpStream,
        bytes: &[u8],
        downstream: bool,
    ) -> Result<(), End> {
        loop {
            let mode = *self.mode.borrow_and_update();
            match mode {
                Mode::BlackHole => {
                    tokio::select! {
                        changed = self.mode.changed() => {
                            if changed.is_err() {
                                return Err(End::Reset);
                            }
                        }
                        _ = self.resets.changed() => return Err(End::Reset),
                        () = self.stop.cancelled() => return Err(End::Reset),
                    }
                }
                Mode::Slice {
                    bytes: piece,
                    delay,
                } if downstream => {
                    for part in bytes.chunks(piece.max(1)) {
                        to.write_all(part).await.map_err(|_| End::Reset)?;
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            _ = self.resets.changed() => return Err(End::Reset),
                            () = self.stop.cancelled() => return Err(End::Reset),
                        }
                    }
                    return Ok(());
                }
                _ => return to.write_all(bytes).await.map_err(|_| End::Reset),
            }
        }
    }
}

/// Closes with RST instead of FIN.
fn abort(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}
