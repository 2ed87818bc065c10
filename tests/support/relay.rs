//! A TCP relay on a free loopback port in front of a server, which a test can cut off
//! (a network partition: every byte in either direction stalls, connections stay open,
//! new ones are accepted and stall too) and restore.
//!
//! Its threads end when it is dropped, also when a test fails.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub(crate) struct Relay {
    pub(crate) addr: SocketAddr,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    /// Relays every connection to `target`.
    pub(crate) fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (Arc::clone(&cut), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !s.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let Ok(server) = TcpStream::connect(target) else {
                            let _ = client.shutdown(Shutdown::Both);
                            continue;
                        };
                        for (from, to) in [
                            (client.try_clone().unwrap(), server.try_clone().unwrap()),
                            (server, client),
                        ] {
                            let (c, s) = (Arc::clone(&c), Arc::clone(&s));
                            std::thread::spawn(move || pump(from, to, &c, &s));
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Relay { addr, cut, stop }
    }

    /// `nats://ADDR` of the relay.
    pub(crate) fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// From now on nothing passes, in either direction.
    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::Release);
    }

    /// Everything that waited passes, and what follows.
    pub(crate) fn restore(&self) {
        self.cut.store(false, Ordering::Release);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.cut.store(false, Ordering::Release);
    }
}

/// Copies `from` to `to` while not cut; stalls (reads nothing) while cut.
fn pump(mut from: TcpStream, mut to: TcpStream, cut: &AtomicBool, stop: &AtomicBool) {
    from.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::Acquire) {
        if cut.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // Bytes read just before a cut are held until it is restored.
                while cut.load(Ordering::Acquire) && !stop.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
