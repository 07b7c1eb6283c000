//! Loopback ports of the host seen from inside another network namespace: a peer daemon
//! that runs in a namespace of its own (so it cannot touch the host's interfaces, routes or
//! firewall) still reaches the test registry at the same `127.0.0.1:PORT`.
//!
//! A listener is made inside the namespace (a thread enters it with `setns`; a socket keeps
//! the namespace it was made in) and each connection it accepts is carried to the same
//! address in the host's namespace by threads that never left it.

use std::fs::File;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Connections carried at once; more wait in the namespace's listen queue.
const MAX_CONNECTIONS: usize = 64;

/// Forwards `addrs` (loopback addresses of the host) from inside process `pid`'s network
/// namespace; stops when dropped.
pub struct Forwarder {
    listeners: Vec<TcpListener>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// Waits (5 s at most) until process `pid` has a network namespace other than ours.
pub fn wait_for_own_netns(pid: u32) -> anyhow::Result<()> {
    let ours = std::fs::read_link("/proc/self/ns/net").context("reading our network namespace")?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::read_link(format!("/proc/{pid}/ns/net")) {
            Ok(ns) if ns != ours => return Ok(()),
            Ok(_) => {}
            Err(e) => bail!("process {pid} exited before it entered its network namespace: {e}"),
        }
        if Instant::now() > deadline {
            bail!("process {pid} did not enter a network namespace of its own within 5 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Forwarder {
    pub fn start(pid: u32, addrs: &[SocketAddr]) -> anyhow::Result<Forwarder> {
        let ns = File::open(format!("/proc/{pid}/ns/net"))
            .with_context(|| format!("opening process {pid}'s network namespace"))?;
        let listeners = bind_inside(ns, addrs)?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (l, addr) in listeners.iter().zip(addrs) {
            let l = l.try_clone()?;
            let (stop, addr) = (stop.clone(), *addr);
            threads.push(std::thread::spawn(move || accept_loop(l, addr, stop)));
        }
        Ok(Forwarder {
            listeners,
            stop,
            threads,
        })
    }
}

/// Binds every address in namespace `ns` from a thread of its own (retrying for 5 s while
/// the namespace's loopback is still down).
fn bind_inside(ns: File, addrs: &[SocketAddr]) -> anyhow::Result<Vec<TcpListener>> {
    let addrs = addrs.to_vec();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let bound = (|| -> anyhow::Result<Vec<TcpListener>> {
            // SAFETY: setns on a namespace file we opened; it affects this thread alone,
            // which ends right after binding.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!(
                    "entering the network namespace: {}",
                    io::Error::last_os_error()
                );
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut out = Vec::new();
            for a in &addrs {
                loop {
                    match TcpListener::bind(a) {
                        Ok(l) => break out.push(l),
                        Err(e) if Instant::now() > deadline => {
                            bail!("binding {a} inside the namespace: {e}")
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            }
            Ok(out)
        })();
        let _ = tx.send(bound);
    });
    rx.recv_timeout(Duration::from_secs(10))
        .context("binding inside the namespace did not finish within 10 s")?
}

fn accept_loop(listener: TcpListener, to: SocketAddr, stop: Arc<AtomicBool>) {
    let live = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(inside) = conn else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        while live.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            std::thread::sleep(Duration::from_millis(10));
        }
        let live = live.clone();
        live.fetch_add(1, Ordering::SeqCst);
        std::thread::spawn(move || {
            if let Ok(outside) = TcpStream::connect_timeout(&to, Duration::from_secs(10)) {
                splice(inside, outside);
            }
            live.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Copies both ways until each side has finished sending.
fn splice(a: TcpStream, b: TcpStream) {
    let (Ok(mut a2), Ok(mut b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut a2, &mut b2);
        let _ = b2.shutdown(Shutdown::Write);
    });
    let (mut a, mut b) = (a, b);
    let _ = io::copy(&mut b, &mut a);
    let _ = a.shutdown(Shutdown::Write);
    let _ = up.join();
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for l in &self.listeners {
            // SAFETY: shutting down a listening socket we own wakes its blocked accept.
            unsafe { libc::shutdown(l.as_raw_fd(), libc::SHUT_RDWR) };
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
