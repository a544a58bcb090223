//! A watch channel whose waiters wake in the order they started waiting.
//!
//! `tokio::sync::watch` spreads its waiters over eight `Notify`s, picking one for each wait with the runtime's
//! random number generator, and wakes the eight in turn: two tasks waiting on one channel wake in an order the
//! generator decides. That generator is seeded from the OS for every runtime (seeding it takes tokio's
//! unstable API), so on a current-thread runtime on a paused clock, two calls told at the same instant that
//! their first poll moved re-armed their timers in either order, and a seed replayed with its polls swapped.
//! Here every waiter waits on one `Notify`, which wakes them first come, first served: one order for one
//! history. Only the part of tokio's API the engine uses is here.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use tokio::sync::Notify;

struct Shared<T> {
    /// The value and its version, changed together.
    value: RwLock<(T, u64)>,
    notify: Notify,
    /// Senders alive: at none, no value will change again.
    senders: AtomicUsize,
}

impl<T> Shared<T> {
    fn read(&self) -> RwLockReadGuard<'_, (T, u64)> {
        // A panic while the value was being replaced leaves a whole value (the closure only assigns it).
        self.value.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every sender went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the watch channel's sender is gone")
    }
}

impl std::error::Error for Closed {}

/// A value borrowed from the channel (hold it briefly: the sender waits for it).
pub struct Ref<'a, T>(RwLockReadGuard<'a, (T, u64)>);

impl<T> std::ops::Deref for Ref<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0.0
    }
}

pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// The version this receiver has seen.
    seen: u64,
}

/// A channel holding `init`.
pub fn channel<T>(init: T) -> (Sender<T>, Receiver<T>) {
    let tx = Sender::new(init);
    let rx = tx.subscribe();
    (tx, rx)
}

impl<T> Sender<T> {
    pub fn new(init: T) -> Sender<T> {
        Sender {
            shared: Arc::new(Shared {
                value: RwLock::new((init, 0)),
                notify: Notify::new(),
                senders: AtomicUsize::new(1),
            }),
        }
    }

    /// A receiver that has seen the value there now.
    pub fn subscribe(&self) -> Receiver<T> {
        let seen = self.shared.read().1;
        Receiver {
            shared: self.shared.clone(),
            seen,
        }
    }

    pub fn borrow(&self) -> Ref<'_, T> {
        Ref(self.shared.read())
    }

    /// Changes the value in place; the receivers hear of it when `modify` returns true.
    pub fn send_if_modified(&self, modify: impl FnOnce(&mut T) -> bool) -> bool {
        let modified = {
            let mut v = self.shared.value.write().unwrap_or_else(|p| p.into_inner());
            let modified = modify(&mut v.0);
            if modified {
                v.1 += 1;
            }
            modified
        };
        if modified {
            self.shared.notify.notify_waiters();
        }
        modified
    }

    /// Sets the value, returning the one before; the receivers hear of it.
    pub fn send_replace(&self, value: T) -> T {
        let old = {
            let mut v = self.shared.value.write().unwrap_or_else(|p| p.into_inner());
            v.1 += 1;
            std::mem::replace(&mut v.0, value)
        };
        self.shared.notify.notify_waiters();
        old
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::AcqRel);
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.notify.notify_waiters();
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Sender")
            .field(&self.shared.read().0)
            .finish()
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Receiver")
            .field(&self.shared.read().0)
            .finish()
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        Receiver {
            shared: self.shared.clone(),
            seen: self.seen,
        }
    }
}

impl<T> Receiver<T> {
    pub fn borrow(&self) -> Ref<'_, T> {
        Ref(self.shared.read())
    }

    /// The value, now marked as seen.
    pub fn borrow_and_update(&mut self) -> Ref<'_, T> {
        let r = self.shared.read();
        self.seen = r.1;
        Ref(r)
    }

    /// Whether there is a value this receiver has not seen. `Err` once every sender is gone.
    pub fn has_changed(&self) -> Result<bool, Closed> {
        if self.shared.senders.load(Ordering::Acquire) == 0 {
            return Err(Closed);
        }
        Ok(self.shared.read().1 != self.seen)
    }

    /// Waits for a value this receiver has not seen, and marks it seen. `Err` once the sender is gone (and
    /// every value it sent was seen).
    pub async fn changed(&mut self) -> Result<(), Closed> {
        loop {
            // Registered before the version is read, so a send between the two still wakes this wait.
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let version = self.shared.read().1;
            if version != self.seen {
                self.seen = version;
                return Ok(());
            }
            if self.shared.senders.load(Ordering::Acquire) == 0 {
                return Err(Closed);
            }
            notified.await;
        }
    }

    /// Waits until the value satisfies `f` (now, or after a change). `Err` if the sender goes first.
    pub async fn wait_for(&mut self, mut f: impl FnMut(&T) -> bool) -> Result<(), Closed> {
        loop {
            if f(&self.borrow_and_update()) {
                return Ok(());
            }
            self.changed().await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waiters_wake_in_the_order_they_started_waiting() {
        let (tx, rx) = channel(0u32);
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (mut rx, order) = (rx.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                if rx.changed().await.is_ok() {
                    order.lock().unwrap_or_else(|p| p.into_inner()).push(i);
                }
            }));
            // Each task is waiting before the next starts.
            tokio::task::yield_now().await;
        }
        tx.send_replace(1);
        for t in tasks {
            let _ = t.await;
        }
        let order = order.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(order, (0..16).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_change_before_the_wait_is_seen_and_a_dropped_sender_ends_the_wait() {
        let (tx, mut rx) = channel(1u32);
        tx.send_replace(2);
        assert_eq!(rx.changed().await, Ok(()));
        assert_eq!(*rx.borrow(), 2);
        let mut other = rx.clone();
        assert!(!tx.send_if_modified(|_| false));
        drop(tx);
        assert_eq!(rx.changed().await, Err(Closed));
        assert_eq!(other.wait_for(|v| *v == 3).await, Err(Closed));
        assert_eq!(other.wait_for(|v| *v == 2).await, Ok(()));
    }
}
