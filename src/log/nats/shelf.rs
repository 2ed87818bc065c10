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

/// A connection to the snapshot bucket.
pub(crate) struct NatsShelf {
    rt: tokio::runtime::Runtime,
    js: jetstream::Context,
    bucket: String,
    replicas: usize,
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
        self.rt.block_on(async {
            let object = match store.get(OBJECT).await {
                Ok(object) => object,
                Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(engine(format!("cannot fetch the snapshot: {e}"))),
            };
            if object.info.size > limit {
                return Ok(None);
            }
            // The size in the info is the publisher's word: it reserves no more than a
            // modest start, and at most one byte past the limit is read.
            let mut bytes = Vec::with_capacity(object.info.size.min(RESERVE_AT_MOST));
            let read = object
                .take(limit as u64 + 1)
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| engine(format!("cannot fetch the snapshot: {e}")))?;
            Ok((read <= limit).then_some(bytes))
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
