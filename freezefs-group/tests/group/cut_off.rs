//! A TCP relay between one agent and etcd, which the test can cut (an agent
//! that loses etcd while etcd and every other agent go on), stall (a
//! partition: nothing is forwarded and nothing is closed) or slow down (an
//! agent far from etcd).

use std::io::Read;
use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub(crate) struct Relay {
    pub(crate) url: String,
    cut: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    /// Relays every connection made to the returned URL to `target`
    /// (`host:port`).
    pub(crate) fn start(target: &str) -> Relay {
        Relay::with_delay(target, Duration::ZERO)
    }

    /// Like [`Relay::start`], each chunk held `delay` before it goes on,
    /// both ways: a round trip of twice `delay`.
    pub(crate) fn with_delay(target: &str, delay: Duration) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let cut = Arc::new(AtomicBool::new(false));
        let stalled = Arc::new(AtomicBool::new(false));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let (target, flag, open) = (target.to_string(), cut.clone(), streams.clone());
        let stall = stalled.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if flag.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let mut open = open.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    delay,
                    stall.clone(),
                );
                pipe(server, client, delay, stall.clone());
            }
        });
        Relay {
            url,
            cut,
            stalled,
            streams,
        }
    }

    /// Stops forwarding, both ways, without closing anything (`false`: goes
    /// on, and what was held is delivered).
    pub(crate) fn stall(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
    }

    /// Cuts every connection and refuses new ones (they are accepted and
    /// dropped): etcd is gone, for this agent only.
    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read: a latency,
/// not a limit on throughput (the chunks queue while they wait).
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration, stalled: Arc<AtomicBool>) {
    let (chunks, due) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut buf = [0u8; 16 << 10];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0
                || chunks
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
    });
    thread::spawn(move || {
        for (at, chunk) in due {
            thread::sleep(at.saturating_duration_since(Instant::now()));
            while stalled.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(10));
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}
