//! The log in memory: for temporary stores and tests, and the proof that nothing but bytes
//! crosses the seam. Everything written is "durable" at once and gone when dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use super::{Batch, Entry, Log, LogError, LogRead, MetaKey, Scan};

#[derive(Default)]
struct State {
    entries: BTreeMap<u64, Vec<u8>>,
    head: Option<Vec<u8>>,
    format: Option<Vec<u8>>,
    chain: Option<Vec<u8>>,
    position: Option<Vec<u8>>,
    contact: Option<Vec<u8>>,
    history: Option<Vec<u8>>,
    refused: std::collections::VecDeque<Vec<u8>>,
}

/// A log held in memory; its readers share it.
#[derive(Default, Clone)]
pub(crate) struct MemLog {
    state: Arc<RwLock<State>>,
}

impl MemLog {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LogRead for MemLog {
    fn scan(&self, from: u64) -> Scan<'_> {
        // A copy: the writer may append while a reader iterates.
        let entries: Vec<Entry> = self
            .read()
            .entries
            .range(from..)
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        Box::new(entries.into_iter().map(Ok))
    }

    fn floor(&self, key: u64) -> Result<Option<Entry>, LogError> {
        Ok(self
            .read()
            .entries
            .range(..=key)
            .next_back()
            .map(|(k, v)| (*k, v.clone())))
    }

    fn head(&self) -> Result<Option<Vec<u8>>, LogError> {
        Ok(self.read().head.clone())
    }

    fn meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, LogError> {
        let state = self.read();
        Ok(match key {
            MetaKey::Format => state.format.clone(),
            MetaKey::Chain => state.chain.clone(),
            MetaKey::Position => state.position.clone(),
            MetaKey::Contact => state.contact.clone(),
            MetaKey::History => state.history.clone(),
        })
    }

    fn refused(&self) -> Result<Vec<Vec<u8>>, LogError> {
        Ok(self.read().refused.iter().cloned().collect())
    }
}

impl Log for MemLog {
    fn write(&mut self, batch: &Batch<'_>) -> Result<(), LogError> {
        let mut state = self.write_state();
        if let Some(from) = batch.discard_from {
            state.entries.split_off(&from);
        }
        for (key, bytes) in batch.entries {
            state.entries.insert(*key, bytes.clone());
        }
        state.head = Some(batch.head.to_vec());
        Ok(())
    }

    fn set_meta(&mut self, key: MetaKey, value: &[u8]) -> Result<(), LogError> {
        let mut state = self.write_state();
        let slot = match key {
            MetaKey::Format => &mut state.format,
            MetaKey::Chain => &mut state.chain,
            MetaKey::Position => &mut state.position,
            MetaKey::Contact => &mut state.contact,
            MetaKey::History => &mut state.history,
        };
        *slot = Some(value.to_vec());
        Ok(())
    }

    fn sync(&mut self) -> Result<(), LogError> {
        Ok(())
    }

    fn sync_handle(&self) -> Result<super::SyncHandle, LogError> {
        Ok(Box::new(|| Ok(())))
    }

    fn append_refused(&mut self, records: &[Vec<u8>], keep: u64) -> Result<(), LogError> {
        let mut state = self.write_state();
        state.refused.extend(records.iter().cloned());
        let keep = usize::try_from(keep).unwrap_or(usize::MAX);
        while state.refused.len() > keep {
            state.refused.pop_front();
        }
        Ok(())
    }

    fn reader(&self) -> Box<dyn LogRead> {
        Box::new(self.clone())
    }

    fn history_writer(&self) -> Result<Box<dyn super::HistoryWrite>, LogError> {
        Ok(Box::new(self.clone()))
    }
}

impl super::HistoryWrite for MemLog {
    fn write(&mut self, entries: &[Entry], history: Option<&[u8]>) -> Result<(), LogError> {
        let mut state = self.write_state();
        for (key, bytes) in entries {
            state.entries.insert(*key, bytes.clone());
        }
        state.history = history.map(<[u8]>::to_vec);
        Ok(())
    }
}

/// A shared log held in memory, for tests: every clone appends to the same stream, and
/// every follower is handed each message as it is appended.
#[cfg(test)]
#[derive(Default, Clone)]
pub(crate) struct MemShared {
    state: Arc<std::sync::Mutex<SharedState>>,
}

#[cfg(test)]
#[derive(Default)]
struct SharedState {
    messages: Vec<Vec<u8>>,
    followers: Vec<crossbeam_channel::Sender<super::Delivered>>,
    /// While set, appends fail as if the stream did not answer.
    unreachable: bool,
    /// While set, appends are stored but their answer is lost, once each.
    lose_answers: bool,
    /// Appends beyond this many messages go unanswered and are not stored.
    capacity: Option<usize>,
    /// The largest message taken (default 1 MiB).
    max_bytes: Option<usize>,
    /// The stream's creation time, as a server would report it.
    created: i64,
    /// The hosts announcing their heads, each handed every announcement (a heads bucket
    /// held in memory, with its revisions).
    heads: Vec<std::sync::Weak<dyn super::Heads>>,
    head_revision: u64,
}

#[cfg(test)]
impl SharedState {
    /// Appends and hands the message to every follower, under the one lock: the position
    /// check and the append are one step, as on the server.
    fn push(&mut self, message: Vec<u8>) -> u64 {
        self.messages.push(message.clone());
        let position = self.messages.len() as u64;
        self.followers
            .retain(|f| f.send(Ok((position, message.clone()))).is_ok());
        position
    }
}

#[cfg(test)]
impl MemShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `message` as another writer would (a rogue one, say), unchecked.
    pub(crate) fn inject(&self, message: Vec<u8>) {
        self.lock().push(message);
    }

    pub(crate) fn set_unreachable(&self, yes: bool) {
        self.lock().unreachable = yes;
    }

    /// Appends beyond `messages` go unanswered (and are not stored); `None` lifts it.
    pub(crate) fn set_capacity(&self, messages: Option<usize>) {
        self.lock().capacity = messages;
    }

    pub(crate) fn set_max_bytes(&self, bytes: usize) {
        self.lock().max_bytes = Some(bytes);
    }

    /// The next append is stored, but its answer is lost.
    pub(crate) fn lose_next_answer(&self) {
        self.lock().lose_answers = true;
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().messages.len()
    }

    /// Deletes the stream and creates it again (another creation time), holding its first
    /// `keep` messages again, as a client with management rights could.
    pub(crate) fn recreate(&self, keep: usize) {
        let mut state = self.lock();
        state.messages.truncate(keep);
        state.created += 1;
    }

    /// Brings back an older copy of the stream (its creation time the same, as a restored
    /// backup of it keeps): its first `keep` messages.
    pub(crate) fn restore_older(&self, keep: usize) {
        self.lock().messages.truncate(keep);
    }
}

#[cfg(test)]
impl super::SharedLog for MemShared {
    fn append(&mut self, after: u64, message: &[u8]) -> Result<u64, super::AppendError> {
        let mut state = self.lock();
        if state.unreachable || state.capacity.is_some_and(|c| state.messages.len() >= c) {
            return Err(super::AppendError::Uncertain(LogError::Engine(
                "unreachable".into(),
            )));
        }
        // As JetStream: the position is checked first, then the message id (the same
        // bytes again are answered with the position they already have).
        if state.messages.len() as u64 != after {
            return Err(super::AppendError::Conflict);
        }
        if let Some(at) = state.messages.iter().position(|m| m == message) {
            return Ok(at as u64 + 1);
        }
        let limit = state.max_bytes.unwrap_or(1 << 20);
        if message.len() > limit {
            return Err(super::AppendError::TooLarge { limit });
        }
        let lost = std::mem::take(&mut state.lose_answers);
        let position = state.push(message.to_vec());
        if lost {
            return Err(super::AppendError::Uncertain(LogError::Engine(
                "no answer".into(),
            )));
        }
        Ok(position)
    }

    fn last(&mut self) -> Result<u64, LogError> {
        Ok(self.lock().messages.len() as u64)
    }

    fn get(&mut self, position: u64) -> Result<Vec<u8>, LogError> {
        let state = self.lock();
        usize::try_from(position)
            .ok()
            .and_then(|p| p.checked_sub(1))
            .and_then(|p| state.messages.get(p).cloned())
            .ok_or_else(|| LogError::Engine(format!("no message {position}")))
    }

    fn follow(&mut self, from: u64) -> Result<crossbeam_channel::Receiver<super::Delivered>, LogError> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut state = self.lock();
        for (i, m) in state
            .messages
            .iter()
            .enumerate()
            .skip(from.saturating_sub(1) as usize)
        {
            let _ = tx.send(Ok((i as u64 + 1, m.clone())));
        }
        state.followers.push(tx);
        Ok(rx)
    }

    fn max_message_bytes(&self) -> usize {
        self.lock().max_bytes.unwrap_or(1 << 20)
    }

    fn inspect(&mut self) -> Result<Option<super::StreamState>, LogError> {
        let state = self.lock();
        let last = state.messages.len() as u64;
        Ok(Some(super::StreamState {
            first: 1,
            last,
            messages: last,
            created: state.created,
            unsafe_settings: None,
        }))
    }

    fn watch(&mut self, every: std::time::Duration, mut judge: super::Judge) -> Result<(), LogError> {
        let mut this = self.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(every);
                if let Ok(state) = super::SharedLog::inspect(&mut this)
                    && !judge(state)
                {
                    return;
                }
            }
        });
        Ok(())
    }

    /// Reports go nowhere: hosts on a shared log in memory share no usage (each
    /// enforces its share).
    fn share_usage(&mut self, _reports: Arc<dyn super::Reports>) -> Result<(), LogError> {
        Ok(())
    }

    /// Requests are not carried: a host of an in-memory fleet writes its own batches.
    fn forward(&mut self, _to: &str, _request: Vec<u8>, undelivered: Box<dyn FnOnce() + Send>) {
        undelivered();
    }

    fn serve_writes(&mut self, _writes: Arc<dyn super::Writes>) -> Result<(), LogError> {
        Ok(())
    }

    /// Announcements are stored at once and handed to every host, as a watch would.
    fn announce(&mut self, heads: Arc<dyn super::Heads>) -> Result<(), LogError> {
        heads.watch_started();
        self.lock().heads.push(Arc::downgrade(&heads));
        let shared = self.clone();
        let announcer = Arc::clone(&heads);
        std::thread::spawn(move || {
            while let Some(announcement) = announcer.next_announcement() {
                let sent = crate::clock::monotonic_micros();
                let (hosts, revision) = {
                    let mut state = shared.lock();
                    state.heads.retain(|h| h.strong_count() > 0);
                    state.head_revision += 1;
                    let hosts: Vec<_> = state.heads.iter().filter_map(std::sync::Weak::upgrade).collect();
                    (hosts, state.head_revision)
                };
                for host in hosts {
                    host.delivered(announcer.host(), Some(&announcement.bytes), revision, true);
                }
                if announcer.announced(announcement.counter, super::Outcome::Acknowledged, sent) {
                    let end = shared.lock().messages.len() as u64;
                    announcer.catch_up_to(end);
                }
            }
        });
        heads.wait_open(std::time::Duration::from_secs(5));
        Ok(())
    }
}
