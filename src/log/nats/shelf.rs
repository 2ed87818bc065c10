//! The snapshot shelf on NATS: a JetStream object store (`<stream>-snapshots`, stream
//! `OBJ_<stream>-snapshots`) holding one object, `snapshot`, the newest sealed snapshot a
//! host published, with the record it stands at in its metadata. Whoever may write the
//! bucket may replace or remove the object; a joining host checks whatever it fetches
//! against the stream (`fleet/replica/snapshot.rs`), so the worst a writer can do is make a
//! host replay the stream instead.

use std::collections::HashMap;
use std::path::Path;

use async_nats::jetstream::{self, object_store};
use tokio::io::AsyncReadExt;

use super::super::connection::Connection;
use super::super::{LogError, SnapshotShelf};
use super::{connect, engine};

/// The one object's name.
const OBJECT: &str = "snapshot";
/// The metadata entry naming the record the snapshot stands at.
const SEQ: &str = "seq";
/// The most a fetch reserves before it has read anything.
const RESERVE_AT_MOST: usize = 64 << 20;
/// A fetched snapshot may be this many times the stream's bytes, and at least
/// [`SMALLEST_BOUND`]: the state the records make is no larger than a small multiple of
/// them (`tests/fleet_snapshot.rs` checks the margin on its keys).
const STREAM_BYTES_FACTOR: u64 = 8;
const SMALLEST_BOUND: u64 = 64 << 20;

/// The most a fetch reads from a stream of `stream_bytes`.
fn bound_for(stream_bytes: u64) -> usize {
    let bound = stream_bytes
        .saturating_mul(STREAM_BYTES_FACTOR)
        .max(SMALLEST_BOUND);
    usize::try_from(bound).unwrap_or(usize::MAX)
}

/// A connection to the snapshot bucket.
pub(crate) struct NatsShelf {
    rt: tokio::runtime::Runtime,
    js: jetstream::Context,
    bucket: String,
    replicas: usize,
    /// The fleet's stream, whose size bounds what a fetch reads.
    stream: String,
    /// How long a fetch waits for the object, and for each part of it.
    patience: std::time::Duration,
    /// The bucket, once found or made.
    store: Option<object_store::ObjectStore>,
}

impl NatsShelf {
    /// Connects (the bucket is found or made when first used).
    pub(crate) fn connect(options: &Connection) -> Result<Self, LogError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (_, js) = rt.block_on(connect(options, None))?;
        Ok(NatsShelf {
            rt,
            js,
            bucket: options.snapshots_bucket.clone(),
            replicas: options.replicas,
            stream: options.stream.clone(),
            patience: options.request_timeout,
            store: None,
        })
    }

    /// The bucket; made if it does not exist and `make`.
    fn store(&mut self, make: bool) -> Result<Option<object_store::ObjectStore>, LogError> {
        if let Some(store) = &self.store {
            return Ok(Some(store.clone()));
        }
        let found = self.rt.block_on(async {
            if let Ok(store) = self.js.get_object_store(&self.bucket).await {
                return Ok(Some(store));
            }
            if !make {
                return Ok(None);
            }
            self.js
                .create_object_store(object_store::Config {
                    bucket: self.bucket.clone(),
                    description: Some("keyledger: sealed snapshots for joining hosts".into()),
                    num_replicas: self.replicas,
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map(Some)
                .or_else(|e| {
                    // Another host made it meanwhile.
                    if e.to_string().contains("already in use") {
                        Ok(None)
                    } else {
                        Err(engine(format!("cannot make the snapshot bucket: {e}")))
                    }
                })
        })?;
        let found = match found {
            Some(store) => Some(store),
            None if make => self.rt.block_on(self.js.get_object_store(&self.bucket)).ok(),
            None => None,
        };
        self.store.clone_from(&found);
        Ok(found)
    }
}

impl SnapshotShelf for NatsShelf {
    fn newest_seq(&mut self) -> Result<Option<u64>, LogError> {
        let Some(store) = self.store(false)? else {
            return Ok(None);
        };
        match self.rt.block_on(store.info(OBJECT)) {
            Ok(info) if !info.deleted => Ok(info.metadata.get(SEQ).and_then(|s| s.parse().ok())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => Ok(None),
            Err(e) => Err(engine(format!("cannot read the snapshot's info: {e}"))),
        }
    }

    fn newest(&mut self, limit: usize) -> Result<Option<Vec<u8>>, LogError> {
        let Some(store) = self.store(false)? else {
            return Ok(None);
        };
        let patience = self.patience;
        let late = |what: &str| engine(format!("the snapshot's {what} did not come within {patience:?}"));
        self.rt.block_on(async {
            // A snapshot holds no more than the records it stands for: a few times the
            // stream's own bytes at most, whatever the object's info claims.
            let stream_bytes = match tokio::time::timeout(patience, self.js.get_stream(&self.stream)).await {
                Ok(Ok(mut stream)) => match tokio::time::timeout(patience, stream.info()).await {
                    Ok(Ok(info)) => info.state.bytes,
                    _ => return Err(late("stream's size")),
                },
                _ => return Err(late("stream's size")),
            };
            let limit = limit.min(bound_for(stream_bytes));
            // The info (and any link it names) is the publisher's word: the whole lookup
            // is bounded in time, and so is each part read.
            let mut object = match tokio::time::timeout(patience, store.get(OBJECT)).await {
                Err(_) => return Err(late("info")),
                Ok(Ok(object)) => object,
                Ok(Err(e)) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
                Ok(Err(e)) => return Err(engine(format!("cannot fetch the snapshot: {e}"))),
            };
            if object.info.size > limit || object.info.options.as_ref().is_some_and(|o| o.link.is_some()) {
                return Ok(None);
            }
            let mut bytes = Vec::with_capacity(object.info.size.min(RESERVE_AT_MOST));
            loop {
                let read = tokio::time::timeout(patience, object.read_buf(&mut bytes))
                    .await
                    .map_err(|_| late("next part"))?
                    .map_err(|e| engine(format!("cannot fetch the snapshot: {e}")))?;
                if read == 0 {
                    return Ok(Some(bytes));
                }
                if bytes.len() > limit {
                    return Ok(None);
                }
            }
        })
    }

    fn put(&mut self, seq: u64, path: &Path) -> Result<(), LogError> {
        let store = self
            .store(true)?
            .ok_or_else(|| engine("the snapshot bucket cannot be found or made"))?;
        self.rt.block_on(async {
            let mut file = tokio::fs::File::open(path).await?;
            let meta = object_store::ObjectMetadata {
                name: OBJECT.into(),
                description: Some(format!("keyledger snapshot at record {seq}")),
                metadata: HashMap::from([(SEQ.to_owned(), seq.to_string())]),
                ..Default::default()
            };
            store
                .put(meta, &mut file)
                .await
                .map(|_| ())
                .map_err(|e| engine(format!("cannot publish the snapshot: {e}")))
        })
    }
}
