//! Reading ahead across files, for the mount: when files of a directory are read one after
//! another (`cat` of a tree), the blocks of the next few are read and inflated (hash-checked,
//! as every read) by a background thread, so each read finds its block ready instead of
//! waiting on gzip. Only blocks stored here are read ahead (never pulled from a peer), the
//! ready blocks are capped in memory, and a block is handed out once.

use crate::blocks::BlockStore;
use crate::ids::BlockId;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

/// Bytes of inflated blocks kept ready at most.
const READY_BYTES: usize = 64 << 20;
/// Threads reading ahead.
const WORKERS: usize = 2;
/// Block ids waiting at most (older wishes are dropped first).
const QUEUE_MAX: usize = 1024;

struct Inner {
    store: BlockStore,
    queue: Mutex<VecDeque<BlockId>>,
    wake: Condvar,
    ready: Mutex<Ready>,
}

#[derive(Default)]
struct Ready {
    blocks: std::collections::HashMap<BlockId, Vec<u8>>,
    order: VecDeque<BlockId>,
    bytes: usize,
    /// Queued or being read: not queued again.
    pending: HashSet<BlockId>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A read-ahead worker over one block store; it stops when this is dropped.
pub struct Prefetcher(Arc<Inner>);

impl Prefetcher {
    /// Starts the worker threads.
    pub fn new(store: BlockStore) -> Prefetcher {
        let inner = Arc::new(Inner {
            store,
            queue: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
            ready: Mutex::new(Ready::default()),
        });
        for _ in 0..WORKERS {
            let weak = Arc::downgrade(&inner);
            std::thread::spawn(move || work(weak));
        }
        Prefetcher(inner)
    }

    /// Asks for `ids` to be read ahead, in order.
    pub fn want(&self, ids: impl IntoIterator<Item = BlockId>) {
        let mut ready = lock(&self.0.ready);
        let mut queue = lock(&self.0.queue);
        for id in ids {
            if !ready.blocks.contains_key(&id) && ready.pending.insert(id) {
                queue.push_back(id);
            }
        }
        while queue.len() > QUEUE_MAX {
            if let Some(old) = queue.pop_front() {
                ready.pending.remove(&old);
            }
        }
        self.0.wake.notify_one();
    }

    /// The inflated, hash-checked bytes of block `id`, if they were read ahead.
    pub fn take(&self, id: &BlockId) -> Option<Vec<u8>> {
        let mut ready = lock(&self.0.ready);
        let data = ready.blocks.remove(id)?;
        ready.bytes -= data.len();
        ready.order.retain(|o| o != id);
        Some(data)
    }
}

fn work(inner: Weak<Inner>) {
    loop {
        let Some(me) = inner.upgrade() else { return };
        let next = {
            let mut queue = lock(&me.queue);
            if queue.is_empty() {
                queue = me.wake.wait_timeout(queue, Duration::from_secs(1)).map_or_else(|e| e.into_inner().0, |r| r.0);
            }
            queue.pop_front()
        };
        let Some(id) = next else { continue };
        // Only what is stored here; a missing or bad block is left to the read itself.
        let data = me.store.get(&id, "").ok();
        let mut ready = lock(&me.ready);
        ready.pending.remove(&id);
        if let Some(data) = data {
            while ready.bytes + data.len() > READY_BYTES {
                let Some(old) = ready.order.pop_front() else { break };
                if let Some(d) = ready.blocks.remove(&old) {
                    ready.bytes -= d.len();
                }
            }
            ready.bytes += data.len();
            ready.order.push_back(id);
            ready.blocks.insert(id, data);
        }
    }
}
