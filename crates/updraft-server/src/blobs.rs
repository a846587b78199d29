//! Firmware images in an object store (`object_store`: a local directory now, S3 later).
//!
//! Uploads are streamed into a staging object while SHA-256, SHA-1 and MD5 are computed and the
//! size limit is enforced; only a complete, accepted upload is moved to its final,
//! content-addressed key (`images/<sha256>`). A refused or failed upload is aborted and leaves
//! nothing behind. Downloads stream a byte range straight from the store.

use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt, TryStreamExt};
use md5::Md5;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, WriteMultipart};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

/// Errors of the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The upload is larger than the limit.
    #[error("upload exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// Reading the upload failed (client went away, malformed body).
    #[error("reading the upload failed: {0}")]
    Source(String),
    /// The object store failed.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// Local I/O failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Unix milliseconds `grace` ago.
fn cutoff_ms(grace: Duration) -> i64 {
    crate::store::now_ms().saturating_sub(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX))
}

/// Chunk size of staged uploads: what one upload holds in memory at most (times two in flight).
const CHUNK: usize = 1 << 20;

/// An upload that was received completely but is not yet accepted.
#[derive(Debug)]
pub struct StagedBlob {
    path: Path,
    /// Bytes received.
    pub size: u64,
    /// SHA-256 of the bytes.
    pub sha256: [u8; 32],
    /// SHA-1 of the bytes.
    pub sha1: [u8; 20],
    /// MD5 of the bytes.
    pub md5: [u8; 16],
}

impl StagedBlob {
    /// The content-addressed key it will have once committed.
    pub fn final_key(&self) -> String {
        format!("images/{}", hex::encode(self.sha256))
    }
}

/// The blob store.
#[derive(Clone, Debug)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    idle_timeout: Duration,
    /// The directory of a local store: downloads read it directly, in large reads.
    local_root: Option<PathBuf>,
}

/// Read size of downloads from a local store. `object_store` reads a local file 8 KiB per
/// blocking task; a few large reads per request cost far less (see BENCHMARKS.md).
const READ_CHUNK: usize = 256 * 1024;

/// How long an upload may send nothing before it is abandoned (slow-data defence).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

impl Blobs {
    /// Blobs in a local directory (created if missing, mode 0700 like its `images/` and
    /// `staging/`; images are 0600, and looser modes found at start are narrowed with a
    /// warning). Leftovers of interrupted uploads are removed.
    pub fn local(dir: &FsPath) -> Result<Blobs, BlobError> {
        crate::perms::private_dir(dir)?;
        let staging = dir.join("staging");
        if staging.exists() {
            std::fs::remove_dir_all(&staging)?;
        }
        crate::perms::private_dir(&staging)?;
        let images = dir.join("images");
        crate::perms::private_dir(&images)?;
        for entry in std::fs::read_dir(&images)? {
            crate::perms::private_file(&entry?.path())?;
        }
        let store = LocalFileSystem::new_with_prefix(dir)?;
        Ok(Blobs {
            store: Arc::new(store),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            local_root: Some(dir.to_path_buf()),
        })
    }

    /// Change how long an upload may stall before it is abandoned.
    pub fn with_idle_timeout(mut self, idle: Duration) -> Blobs {
        self.idle_timeout = idle;
        self
    }

    /// Stream `body` into a staging object, hashing it, refusing it past `limit` bytes.
    pub async fn stage<S, E>(&self, body: S, limit: u64) -> Result<StagedBlob, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let mut random = [0u8; 16];
        rand::fill(&mut random);
        let path = Path::from(format!("staging/{}", hex::encode(random)));
        let upload = self.store.put_multipart(&path).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK);
        let mut sha256 = Sha256::new();
        let mut sha1 = Sha1::new();
        let mut md5 = Md5::new();
        let mut size: u64 = 0;
        let mut body = std::pin::pin!(body);
        let failure = loop {
            let next = match tokio::time::timeout(self.idle_timeout, body.next()).await {
                Ok(next) => next,
                Err(_) => {
                    break Some(BlobError::Source(format!(
                        "no data for {} s",
                        self.idle_timeout.as_secs_f32()
                    )));
                }
            };
            let chunk = match next {
                None => break None,
                Some(Err(e)) => break Some(BlobError::Source(e.to_string())),
                Some(Ok(chunk)) => chunk,
            };
            size = size.saturating_add(chunk.len() as u64);
            if size > limit {
                break Some(BlobError::TooLarge { limit });
            }
            sha256.update(&chunk);
            sha1.update(&chunk);
            md5.update(&chunk);
            writer.put(chunk);
            if let Err(e) = writer.wait_for_capacity(2).await {
                break Some(e.into());
            }
        };
        if let Some(e) = failure {
            // Nothing may be left behind: abort removes the staged parts.
            let _ = writer.abort().await;
            return Err(e);
        }
        writer.finish().await?;
        Ok(StagedBlob {
            path,
            size,
            sha256: sha256.finalize().into(),
            sha1: sha1.finalize().into(),
            md5: md5.finalize().into(),
        })
    }

    /// Accept a staged upload: move it to its final key, which is returned.
    pub async fn commit(&self, staged: StagedBlob) -> Result<String, BlobError> {
        let key = staged.final_key();
        self.store
            .rename(&staged.path, &Path::from(key.as_str()))
            .await?;
        if let Some(root) = &self.local_root {
            crate::perms::set_private(&root.join(&key))?;
        }
        Ok(key)
    }

    /// Delete the image blobs no release points at (`referenced`) and that are older than
    /// `grace` (a younger one may belong to an upload committed by another server a moment
    /// before its release row). Each removal is logged at info level; the keys are returned.
    /// Start-up runs this so a crash between storing an image and writing its row leaks
    /// nothing for long.
    pub async fn remove_orphans(
        &self,
        referenced: &std::collections::HashSet<String>,
        grace: Duration,
    ) -> Result<Vec<String>, BlobError> {
        let items: Vec<_> = self
            .store
            .list(Some(&Path::from("images")))
            .try_collect()
            .await?;
        let cutoff = cutoff_ms(grace);
        let mut removed = Vec::new();
        for item in items {
            let key = item.location.to_string();
            if referenced.contains(&key) {
                continue;
            }
            if item.last_modified.timestamp_millis() > cutoff {
                tracing::info!(blob = %key, "unreferenced image blob is recent; kept until a later start");
                continue;
            }
            self.store.delete(&item.location).await?;
            tracing::info!(blob = %key, size = item.size, "removed an image blob no release points at");
            removed.push(key);
        }
        Ok(removed)
    }

    /// Refuse a staged upload: delete it.
    pub async fn discard(&self, staged: StagedBlob) {
        if let Err(e) = self.store.delete(&staged.path).await {
            tracing::warn!(error = %e, "could not delete a refused upload");
        }
    }

    /// Delete a committed blob (best effort; used when the release insert fails).
    pub async fn remove(&self, key: &str) {
        if let Err(e) = self.store.delete(&Path::from(key)).await {
            tracing::warn!(error = %e, key, "could not delete a blob");
        }
    }

    /// Stream the bytes `range` (or all) of the blob `key`.
    pub async fn get(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
        if let Some(root) = &self.local_root {
            return Self::get_local(root, key, range).await;
        }
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..Default::default()
        };
        let result = self.store.get_opts(&Path::from(key), options).await?;
        Ok(result.into_stream().map_err(BlobError::from).boxed())
    }

    /// A local blob as a stream of large reads; same semantics as the object-store path.
    async fn get_local(
        root: &FsPath,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
        // Parsing through `Path` refuses `..` and empty segments, as the store itself does.
        let key = Path::parse(key).map_err(object_store::Error::from)?;
        let mut file = tokio::fs::File::open(root.join(key.as_ref())).await?;
        let len = file.metadata().await?.len();
        let range = range.unwrap_or(0..len);
        if range.start > range.end || range.end > len {
            return Err(BlobError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("range {range:?} outside a blob of {len} bytes"),
            )));
        }
        file.seek(std::io::SeekFrom::Start(range.start)).await?;
        let reader = file.take(range.end - range.start);
        Ok(ReaderStream::with_capacity(reader, READ_CHUNK)
            .map_err(BlobError::from)
            .boxed())
    }

    /// Number of objects under `prefix` (tests use it to prove nothing was left behind).
    pub async fn count(&self, prefix: &str) -> Result<usize, BlobError> {
        let prefix = Path::from(prefix);
        let items: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        Ok(items.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(data: &[u8], size: usize) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
        let parts: Vec<_> = data
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures_util::stream::iter(parts)
    }

    #[tokio::test]
    async fn staged_upload_hashes_commits_and_serves_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::local(dir.path()).unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let staged = blobs
            .stage(chunks(&data, 65_536), 10_000_000)
            .await
            .unwrap();
        assert_eq!(staged.size, data.len() as u64);
        assert_eq!(staged.sha256, <[u8; 32]>::from(Sha256::digest(&data)));
        assert_eq!(staged.md5, <[u8; 16]>::from(Md5::digest(&data)));
        assert_eq!(staged.sha1, <[u8; 20]>::from(Sha1::digest(&data)));
        let key = blobs.commit(staged).await.unwrap();
        assert_eq!(blobs.count("staging").await.unwrap(), 0);
        let got: Vec<Bytes> = blobs
            .get(&key, Some(100..2_000_100))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(got.concat(), &data[100..2_000_100]);
    }

    #[tokio::test]
    async fn oversize_and_broken_uploads_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::local(dir.path()).unwrap();
        let data = vec![7u8; 3 * CHUNK];
        let err = blobs
            .stage(chunks(&data, 4096), 2 * CHUNK as u64)
            .await
            .unwrap_err();
        assert!(matches!(err, BlobError::TooLarge { .. }));
        let broken = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err(std::io::Error::other("connection reset")),
        ]);
        assert!(matches!(
            blobs.stage(broken, 100).await,
            Err(BlobError::Source(_))
        ));
        // A sender that stalls is cut off.
        let stalled =
            futures_util::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from_static(b"abc"))])
                .chain(futures_util::stream::pending());
        let quick = blobs.clone().with_idle_timeout(Duration::from_millis(100));
        assert!(matches!(
            quick.stage(stalled, 100).await,
            Err(BlobError::Source(_))
        ));
        let staged = blobs.stage(chunks(b"refused", 3), 100).await.unwrap();
        blobs.discard(staged).await;
        assert_eq!(blobs.count("").await.unwrap(), 0);
        // No file at all under the directory.
        let files = walk(dir.path());
        assert!(files.is_empty(), "left behind: {files:?}");
    }

    fn walk(dir: &FsPath) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
