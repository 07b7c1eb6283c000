//! PID 1's duty: reap every zombie. Exit statuses of the PIDs tether is waiting for go to their
//! session; everything else (orphans re-parented to PID 1) is just collected.

use std::collections::HashMap;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Shared between the reaper thread and the spawner.
#[derive(Default)]
pub struct Reaper {
    waiters: Mutex<HashMap<i32, Sender<i32>>>,
    children: Condvar,
}

/// Held while forking: the reaper cannot collect a child before its waiter is registered.
pub struct SpawnGuard<'a> {
    waiters: MutexGuard<'a, HashMap<i32, Sender<i32>>>,
    reaper: &'a Reaper,
}

impl SpawnGuard<'_> {
    /// Sends `pid`'s raw wait status to `tx` when it exits.
    pub fn watch(&mut self, pid: i32, tx: Sender<i32>) {
        self.waiters.insert(pid, tx);
        self.reaper.children.notify_all();
    }
}

impl Reaper {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Locks out reaping for the duration of a fork.
    pub fn lock(&self) -> SpawnGuard<'_> {
        let waiters = match self.waiters.lock() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        };
        SpawnGuard {
            waiters,
            reaper: self,
        }
    }

    /// Hands `pid`'s wait status to its waiter as the reaper thread does, for tests that have
    /// no real child to reap. False when nobody waits for `pid`.
    #[cfg(test)]
    pub fn deliver(&self, pid: i32, status: i32) -> bool {
        let tx = self.lock().waiters.remove(&pid);
        tx.is_some_and(|tx| tx.send(status).is_ok())
    }

    /// The reaper thread's loop; never returns.
    pub fn run(&self) -> ! {
        loop {
            // Wait for a zombie without collecting it, so that collection happens under the lock.
            // SAFETY: `info` is a valid siginfo_t for waitid to fill.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            let r =
                unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
            let mut g = self.lock();
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ECHILD) {
                    // No children at all: sleep until a spawn registers one.
                    let waiters = g.waiters;
                    let _ = self.children.wait_timeout(waiters, Duration::from_secs(1));
                }
                continue;
            }
            loop {
                let mut status = 0;
                // SAFETY: `status` is a valid int for waitpid to fill.
                let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
                if let Some(tx) = g.waiters.remove(&pid) {
                    let _ = tx.send(status);
                }
            }
            g.waiters.shrink_to_fit();
            drop(g);
        }
    }
}
