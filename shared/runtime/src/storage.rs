//! Object storage: Cloud Storage in production and tests, a local folder for the local stack.
//!
//! Three implementations of [`ObjectStore`]:
//! - [`GcsStore`] on the official `google-cloud-storage` client, against Cloud Storage or an
//!   emulator such as fake-gcs-server;
//! - [`LocalDirStore`], a local folder with one subfolder per bucket, for the local stack;
//! - [`MemoryStore`], in memory, for handler tests.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use google_cloud_storage::client::Storage;
use tokio::io::{AsyncRead, AsyncWriteExt};

/// A streaming reader over an object's bytes, as stored (not decompressed).
pub type ObjectReader = Pin<Box<dyn AsyncRead + Send>>;

/// The object facts the functions need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    pub bucket: String,
    pub name: String,
    pub generation: i64,
    pub size: u64,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    /// Custom metadata (`x-goog-meta-*`), such as `tenant_id`.
    pub metadata: BTreeMap<String, String>,
}

/// Result of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Created,
    /// The object already existed and was left unchanged.
    AlreadyExists,
}

#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Opens an object for streaming. With `generation`, reads that generation only.
    async fn open(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Result<(ObjectMeta, ObjectReader), StorageError>;

    /// Writes an object only if no live object has that name (`ifGenerationMatch=0`).
    async fn write_if_absent(
        &self,
        bucket: &str,
        name: &str,
        data: Bytes,
        content_type: &str,
    ) -> Result<WriteOutcome, StorageError>;

    /// Writes an object, replacing any existing one.
    async fn write(
        &self,
        bucket: &str,
        name: &str,
        data: Bytes,
        content_type: &str,
    ) -> Result<(), StorageError>;

    /// Reads a whole small object into memory; `Ok(None)` when it does not exist.
    async fn read_small(&self, bucket: &str, name: &str) -> Result<Option<Bytes>, StorageError>;
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object gs://{bucket}/{name} not found")]
    NotFound { bucket: String, name: String },
    /// A failure a later retry can fix (network, 429, 5xx).
    #[error("storage request failed and may succeed later: {0}")]
    Transient(String),
    /// A failure that needs a human (permissions, bad bucket name).
    #[error("storage request failed: {0}")]
    Permanent(String),
}

impl StorageError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StorageError::Transient(_))
    }
}

// ---------------------------------------------------------------------------------------------
// Cloud Storage
// ---------------------------------------------------------------------------------------------

/// Default time limit of one write, and of opening a read until the response headers arrive.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default longest wait for the next chunk of an object being read.
pub const DEFAULT_READ_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// [`ObjectStore`] on the official Cloud Storage client (JSON API).
///
/// The client sets no time limit of its own, so a server that stops answering would block a
/// call forever. Every call here has one: writes and the opening of a read are limited by the
/// request timeout (client retries included), and a streaming read by an idle timeout between
/// chunks, so a large object can take as long as it needs while data keeps arriving. A call
/// that times out fails with [`StorageError::Transient`].
#[derive(Debug, Clone)]
pub struct GcsStore {
    client: Storage,
    request_timeout: Duration,
    read_idle_timeout: Duration,
}

impl GcsStore {
    /// Wraps a client that the caller built, with the default time limits.
    pub fn new(client: Storage) -> Self {
        Self {
            client,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            read_idle_timeout: DEFAULT_READ_IDLE_TIMEOUT,
        }
    }

    /// Sets the time limit of one write and of opening a read (default
    /// [`DEFAULT_REQUEST_TIMEOUT`]).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the longest wait for the next chunk of a read (default
    /// [`DEFAULT_READ_IDLE_TIMEOUT`]).
    pub fn with_read_idle_timeout(mut self, timeout: Duration) -> Self {
        self.read_idle_timeout = timeout;
        self
    }

    /// Runs one request under the request timeout.
    async fn limit<T>(
        &self,
        bucket: &str,
        name: &str,
        request: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        tokio::time::timeout(self.request_timeout, request)
            .await
            .unwrap_or_else(|_| Err(timed_out(bucket, name, "request", self.request_timeout)))
    }

    /// Builds a client for Cloud Storage with Application Default Credentials or, when
    /// `emulator_host` is set (the value of `STORAGE_EMULATOR_HOST`, `host:port` or a URL), for
    /// that emulator with anonymous credentials.
    ///
    /// The client ignores `STORAGE_EMULATOR_HOST`, so callers pass its value here.
    pub async fn connect(emulator_host: Option<&str>) -> Result<Self, StorageError> {
        let builder = Storage::builder();
        let builder = match emulator_host {
            Some(host) => builder
                .with_endpoint(
                    crate::config::emulator_url(host).unwrap_or_else(|| host.to_string()),
                )
                .with_credentials(
                    google_cloud_auth::credentials::anonymous::Builder::new().build(),
                ),
            None => builder,
        };
        let client = builder.build().await.map_err(|e| {
            StorageError::Permanent(format!("cannot build the storage client: {e}"))
        })?;
        Ok(Self::new(client))
    }
}

/// Builds the error for a Cloud Storage call that exceeded `limit`.
fn timed_out(bucket: &str, name: &str, what: &str, limit: Duration) -> StorageError {
    StorageError::Transient(format!(
        "gs://{bucket}/{name}: {what} timed out after {:?}",
        limit
    ))
}

/// Reads the next chunk of `response`, waiting at most `idle_timeout` for it.
async fn next_chunk(
    response: &mut google_cloud_storage::read_object::ReadObjectResponse,
    bucket: &str,
    name: &str,
    idle_timeout: Duration,
) -> Option<Result<Bytes, StorageError>> {
    match tokio::time::timeout(idle_timeout, response.next()).await {
        Err(_) => Some(Err(timed_out(
            bucket,
            name,
            "waiting for the next chunk",
            idle_timeout,
        ))),
        Ok(chunk) => chunk.map(|chunk| chunk.map_err(|e| classify_gcs_error(bucket, name, e))),
    }
}

fn bucket_path(bucket: &str) -> String {
    format!("projects/_/buckets/{bucket}")
}

/// Maps a client error to [`StorageError`]. A 412 is not mapped here: only conditional writes
/// expect one.
fn classify_gcs_error(
    bucket: &str,
    name: &str,
    error: google_cloud_storage::Error,
) -> StorageError {
    use google_cloud_gax::error::rpc::Code;

    let status_code = error.http_status_code();
    let rpc_code = error.status().map(|status| status.code);
    if status_code == Some(404) || rpc_code == Some(Code::NotFound) {
        return StorageError::NotFound {
            bucket: bucket.to_string(),
            name: name.to_string(),
        };
    }
    let transient = match status_code {
        // Request timeout, rate limit and server errors clear up on their own.
        Some(408 | 429) => true,
        Some(code) if code >= 500 => true,
        // Any other status (401, 403, 400) needs a change of configuration.
        Some(_) => false,
        // No status: the request failed in transit or the client timed out.
        None => {
            error.is_timeout()
                || error.is_io()
                || error.is_connect()
                || error.is_transport()
                || error.is_exhausted()
        }
    };
    if transient {
        StorageError::Transient(format!("gs://{bucket}/{name}: {error}"))
    } else {
        StorageError::Permanent(format!("gs://{bucket}/{name}: {error}"))
    }
}

fn is_precondition_failure(error: &google_cloud_storage::Error) -> bool {
    use google_cloud_gax::error::rpc::Code;
    error.http_status_code() == Some(412)
        || error.status().map(|status| status.code) == Some(Code::FailedPrecondition)
}

fn non_empty(value: String) -> Option<String> {
    if value.is_empty() { None } else { Some(value) }
}

#[async_trait]
impl ObjectStore for GcsStore {
    async fn open(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Result<(ObjectMeta, ObjectReader), StorageError> {
        let mut request = self.client.read_object(bucket_path(bucket), name);
        if let Some(generation) = generation {
            request = request.set_generation(generation);
        }
        let response = self
            .limit(bucket, name, async {
                request
                    .send()
                    .await
                    .map_err(|e| classify_gcs_error(bucket, name, e))
            })
            .await?;

        let highlights = response.object();
        let meta = ObjectMeta {
            bucket: bucket.to_string(),
            name: name.to_string(),
            generation: highlights.generation,
            size: u64::try_from(highlights.size).unwrap_or_default(),
            content_type: non_empty(highlights.content_type),
            content_encoding: non_empty(highlights.content_encoding),
            metadata: highlights.metadata.into_iter().collect(),
        };

        let owned_bucket = bucket.to_string();
        let owned_name = name.to_string();
        let idle_timeout = self.read_idle_timeout;
        // The state is `None` after an error, so the stream ends instead of waiting again.
        let chunks = futures::stream::unfold(Some(response), move |state| {
            let bucket = owned_bucket.clone();
            let name = owned_name.clone();
            async move {
                let mut response = state?;
                match next_chunk(&mut response, &bucket, &name, idle_timeout).await? {
                    Ok(chunk) => Some((Ok(chunk), Some(response))),
                    Err(error) => Some((Err(io::Error::other(error.to_string())), None)),
                }
            }
        });
        let reader = tokio_util::io::StreamReader::new(Box::pin(chunks));
        Ok((meta, Box::pin(reader)))
    }

    async fn write_if_absent(
        &self,
        bucket: &str,
        name: &str,
        data: Bytes,
        content_type: &str,
    ) -> Result<WriteOutcome, StorageError> {
        // NOTE: the client retries a conditional write after a transport error. When the first
        // try was stored but its response lost, the retry fails its precondition and this
        // returns `AlreadyExists` for an object that this call created. Callers that must tell
        // the two apart write an owner token into the object and read it back.
        let request = async {
            let result = self
                .client
                .write_object(bucket_path(bucket), name, data)
                .set_if_generation_match(0)
                .set_content_type(content_type)
                .with_resumable_upload_threshold(usize::MAX)
                .send_buffered()
                .await;
            match result {
                Ok(_) => Ok(WriteOutcome::Created),
                Err(error) if is_precondition_failure(&error) => Ok(WriteOutcome::AlreadyExists),
                Err(error) => Err(classify_gcs_error(bucket, name, error)),
            }
        };
        self.limit(bucket, name, request).await
    }

    async fn write(
        &self,
        bucket: &str,
        name: &str,
        data: Bytes,
        content_type: &str,
    ) -> Result<(), StorageError> {
        // Small whole-object writes are safe to retry: the last write wins either way.
        let request = async {
            self.client
                .write_object(bucket_path(bucket), name, data)
                .set_content_type(content_type)
                .with_idempotency(true)
                .with_resumable_upload_threshold(usize::MAX)
                .send_buffered()
                .await
                .map(|_| ())
                .map_err(|e| classify_gcs_error(bucket, name, e))
        };
        self.limit(bucket, name, request).await
    }

    async fn read_small(&self, bucket: &str, name: &str) -> Result<Option<Bytes>, StorageError> {
        let request = async {
            self.client
                .read_object(bucket_path(bucket), name)
                .send()
                .await
                .map_err(|e| classify_gcs_error(bucket, name, e))
        };
        let mut response = match self.limit(bucket, name, request).await {
            Ok(response) => response,
            Err(StorageError::NotFound { .. }) => return Ok(None),
            Err(other) => return Err(other),
        };
        let mut contents = Vec::new();
        while let Some(chunk) =
            next_chunk(&mut response, bucket, name, self.read_idle_timeout).await
        {
            contents.extend_from_slice(&chunk?);
        }
        Ok(Some(Bytes::from(contents)))
    }
}

// ---------------------------------------------------------------------------------------------
// Local folder
// ---------------------------------------------------------------------------------------------

/// [`ObjectStore`] on a local folder: object `NAME` of bucket `B` is the file `ROOT/B/NAME`.
///
/// The generation of an object is its file's modification time in nanoseconds since the Unix
/// epoch. Every write goes to a temporary file first and is then moved into place, so a reader
/// never sees a partly written object. Custom metadata, content type and content encoding are
/// not stored: [`ObjectMeta`] carries none of them.
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    /// Uses `root` as the folder of buckets; it is created on the first write.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Returns the file path of an object, rejecting names that would leave the bucket folder.
    pub fn object_path(&self, bucket: &str, name: &str) -> Result<PathBuf, StorageError> {
        check_path_segment("bucket", bucket)?;
        if name.is_empty() || name.ends_with('/') {
            return Err(StorageError::Permanent(format!(
                "invalid object name {name:?}: it must be non-empty and not end with '/'"
            )));
        }
        let relative = Path::new(name);
        let only_normal = relative
            .components()
            .all(|component| matches!(component, Component::Normal(_)));
        if !only_normal {
            return Err(StorageError::Permanent(format!(
                "invalid object name {name:?}: '.', '..' and absolute paths are not allowed in a \
                 local bucket"
            )));
        }
        Ok(self.root.join(bucket).join(relative))
    }

    /// Writes `data` to a new temporary file beside `path` and returns the temporary path.
    async fn write_temp(&self, path: &Path, data: &[u8]) -> io::Result<PathBuf> {
        let parent = path.parent().unwrap_or(&self.root);
        tokio::fs::create_dir_all(parent).await?;
        let file_name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = parent.join(format!(
            ".{file_name}.{}.tmp",
            uuid::Uuid::new_v4().simple()
        ));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .await?;
        file.write_all(data).await?;
        file.sync_all().await?;
        Ok(temp)
    }
}

fn check_path_segment(kind: &str, value: &str) -> Result<(), StorageError> {
    let valid = !value.is_empty()
        && value != "."
        && value != ".."
        && !value.contains(['/', '\\'])
        && !value.starts_with('.');
    if valid {
        Ok(())
    } else {
        Err(StorageError::Permanent(format!(
            "invalid {kind} name {value:?} for a local bucket folder"
        )))
    }
}

fn local_io_error(path: &Path, error: io::Error) -> StorageError {
    StorageError::Permanent(format!("{}: {error}", path.display()))
}

fn generation_of(metadata: &std::fs::Metadata) -> i64 {
    metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .and_then(|elapsed| i64::try_from(elapsed.as_nanos()).ok())
        .unwrap_or(1)
}

#[async_trait]
impl ObjectStore for LocalDirStore {
    async fn open(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Result<(ObjectMeta, ObjectReader), StorageError> {
        let path = self.object_path(bucket, name)?;
        let not_found = || StorageError::NotFound {
            bucket: bucket.to_string(),
            name: name.to_string(),
        };
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Err(not_found()),
            Err(error) => return Err(local_io_error(&path, error)),
        };
        let metadata = file
            .metadata()
            .await
            .map_err(|e| local_io_error(&path, e))?;
        if metadata.is_dir() {
            return Err(not_found());
        }
        let current_generation = generation_of(&metadata);
        // A file keeps no older generations: asking for another one is asking for a deleted
        // object, which Cloud Storage also reports as not found.
        if generation.is_some_and(|wanted| wanted != current_generation) {
            return Err(not_found());
        }
        let meta = ObjectMeta {
            bucket: bucket.to_string(),
            name: name.to_string(),
            generation: current_generation,
            size: metadata.len(),
            ..ObjectMeta::default()
        };
        Ok((meta, Box::pin(file)))
    }

    async fn write_if_absent(
        &self,
        bucket: &str,
        name: &str,
        data: Bytes,
        _content_type: &str,
    ) -> Result<WriteOutcome, StorageError> {
        let path = self.object_path(bucket, name)?;
        let temp = self
            .write_temp(&path, &data)
            .await
            .map_err(|e| local_io_error(&path, e))?;
        // A hard link is created atomically and fails when the name exists, like `create_new`,
        // and the linked file already contains all of its content.
        let linked = tokio::fs::hard_link(&temp, &path).await;
        let removed = tokio::fs::remove_file(&temp).await;
        match linked {
            Ok(()) => {
                removed.map_err(|e| local_io_error(&temp, e))?;
                Ok(WriteOutcome::Created)
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                Ok(WriteOutcome::AlreadyExists)
            }
            Err(error) => Err(local_io_error(&path, error)),
        }
    }

    async fn write(
        &self,
        bucket: &str,
        name: &str,
        data: Bytes,
        _content_type: &str,
    ) -> Result<(), StorageError> {
        let path = self.object_path(bucket, name)?;
        let temp = self
            .write_temp(&path, &data)
            .await
            .map_err(|e| local_io_error(&path, e))?;
        // `rename` replaces the target atomically on the same file system.
        if let Err(error) = tokio::fs::rename(&temp, &path).await {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(local_io_error(&path, error));
        }
        Ok(())
    }

    async fn read_small(&self, bucket: &str, name: &str) -> Result<Option<Bytes>, StorageError> {
        let path = self.object_path(bucket, name)?;
        match tokio::fs::read(&path).await {
            Ok(contents) => Ok(Some(Bytes::from(contents))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(local_io_error(&path, error)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------

/// [`ObjectStore`] in memory, for tests. Generations count up from 1 across the store.
///
/// [`MemoryStore::fail_next`] makes the next calls fail, to test error paths.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<HashMap<(String, String), (ObjectMeta, Bytes)>>,
    next_generation: AtomicU64,
    failures: Mutex<Vec<StorageError>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores an object with the given metadata and returns its generation. `bucket`, `name`,
    /// `generation` and `size` of `meta` are set here.
    pub fn put(&self, bucket: &str, name: &str, data: impl Into<Bytes>, meta: ObjectMeta) -> i64 {
        let data = data.into();
        let generation = self.take_generation();
        let meta = ObjectMeta {
            bucket: bucket.to_string(),
            name: name.to_string(),
            generation,
            size: data.len() as u64,
            ..meta
        };
        self.lock_objects()
            .insert((bucket.to_string(), name.to_string()), (meta, data));
        generation
    }

    /// Returns the current contents and metadata of an object.
    pub fn get(&self, bucket: &str, name: &str) -> Option<(ObjectMeta, Bytes)> {
        self.lock_objects()
            .get(&(bucket.to_string(), name.to_string()))
            .cloned()
    }

    /// Returns the names of the objects in `bucket` that start with `prefix`, sorted.
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .lock_objects()
            .keys()
            .filter(|(b, name)| b == bucket && name.starts_with(prefix))
            .map(|(_, name)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// Makes the next call of any method fail with `error`. Several queued errors fail that
    /// many calls, in order.
    pub fn fail_next(&self, error: StorageError) {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(error);
    }

    fn take_failure(&self) -> Result<(), StorageError> {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.remove(0))
        }
    }

    fn take_generation(&self) -> i64 {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed) + 1;
        i64::try_from(generation).unwrap_or(i64::MAX)
    }

    fn lock_objects(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String), (ObjectMeta, Bytes)>> {
        self.objects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn new_meta(&self, bucket: &str, name: &str, data: &Bytes, content_type: &str) -> ObjectMeta {
        ObjectMeta {
            bucket: bucket.to_string(),
            name: name.to_string(),
            generation: self.take_generation(),
            size: data.len() as u64,
            content_type: Some(content_type.to_string()),
            ..ObjectMeta::default()
        }
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn open(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Result<(ObjectMeta, ObjectReader), StorageError> {
        self.take_failure()?;
        let found = self
            .get(bucket, name)
            .filter(|(meta, _)| generation.is_none_or(|wanted| wanted == meta.generation));
        match found {
            Some((meta, data)) => Ok((meta, Box::pin(io::Cursor::new(data)))),
            None => Err(StorageError::NotFound {
                bucket: bucket.to_string(),
                name: name.to_string(),
            }),
        }
    }

    async fn write_if_absent(
        &self,
        bucket: &str,
        name: &str,
        data: Bytes,
        content_type: &str,
    ) -> Result<WriteOutcome, StorageError> {
        self.take_failure()?;
        let meta = self.new_meta(bucket, name, &data, content_type);
        let mut objects = self.lock_objects();
        let key = (bucket.to_string(), name.to_string());
        if objects.contains_key(&key) {
            return Ok(WriteOutcome::AlreadyExists);
        }
        objects.insert(key, (meta, data));
        Ok(WriteOutcome::Created)
    }

    async fn write(
        &self,
        bucket: &str,
        name: &str,
        data: Bytes,
        content_type: &str,
    ) -> Result<(), StorageError> {
        self.take_failure()?;
        let meta = self.new_meta(bucket, name, &data, content_type);
        self.lock_objects()
            .insert((bucket.to_string(), name.to_string()), (meta, data));
        Ok(())
    }

    async fn read_small(&self, bucket: &str, name: &str) -> Result<Option<Bytes>, StorageError> {
        self.take_failure()?;
        Ok(self.get(bucket, name).map(|(_, data)| data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use tokio::io::AsyncReadExt;

    async fn read_all(mut reader: ObjectReader) -> Vec<u8> {
        let mut contents = Vec::new();
        reader.read_to_end(&mut contents).await.unwrap();
        contents
    }

    #[tokio::test]
    async fn local_write_then_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path());
        store
            .write(
                "input",
                "incoming/t1/a.csv",
                Bytes::from_static(b"email\na@b.co\n"),
                "text/csv",
            )
            .await
            .unwrap();

        let (meta, reader) = store
            .open("input", "incoming/t1/a.csv", None)
            .await
            .unwrap();
        assert_eq!(meta.bucket, "input");
        assert_eq!(meta.name, "incoming/t1/a.csv");
        assert_eq!(meta.size, 13);
        assert!(meta.generation > 0, "generation {}", meta.generation);
        assert_eq!(read_all(reader).await, b"email\na@b.co\n");
        assert!(dir.path().join("input/incoming/t1/a.csv").is_file());
    }

    #[tokio::test]
    async fn local_open_checks_generation() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path());
        store
            .write("b", "o.txt", Bytes::from_static(b"x"), "text/plain")
            .await
            .unwrap();
        let (meta, _) = store.open("b", "o.txt", None).await.unwrap();

        let same = store.open("b", "o.txt", Some(meta.generation)).await;
        assert_eq!(same.unwrap().0, meta);
        let other = store.open("b", "o.txt", Some(meta.generation + 1)).await;
        assert!(matches!(other, Err(StorageError::NotFound { .. })));
    }

    #[tokio::test]
    async fn local_missing_object_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path());
        let opened = store.open("b", "missing.txt", None).await;
        assert!(matches!(opened, Err(StorageError::NotFound { .. })));
        assert_eq!(store.read_small("b", "missing.txt").await.unwrap(), None);
    }

    #[tokio::test]
    async fn local_write_if_absent_keeps_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path());
        let first = store
            .write_if_absent("b", "state/x", Bytes::from_static(b"first"), "text/plain")
            .await
            .unwrap();
        let second = store
            .write_if_absent("b", "state/x", Bytes::from_static(b"second"), "text/plain")
            .await
            .unwrap();
        assert_eq!(first, WriteOutcome::Created);
        assert_eq!(second, WriteOutcome::AlreadyExists);
        let stored = store.read_small("b", "state/x").await.unwrap();
        assert_eq!(stored, Some(Bytes::from_static(b"first")));
        // No temporary files are left beside the object.
        let entries: Vec<_> = std::fs::read_dir(dir.path().join("b/state"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(entries, vec!["x".to_string()]);
    }

    #[tokio::test]
    async fn local_write_if_absent_races_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(LocalDirStore::new(dir.path()));
        let mut tasks = Vec::new();
        for i in 0..16 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .write_if_absent(
                        "b",
                        "claim",
                        Bytes::from(format!("owner-{i}")),
                        "text/plain",
                    )
                    .await
                    .unwrap()
            }));
        }
        let mut created = 0;
        for task in tasks {
            if task.await.unwrap() == WriteOutcome::Created {
                created += 1;
            }
        }
        assert_eq!(created, 1);
    }

    #[tokio::test]
    async fn local_write_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path());
        store
            .write("b", "o", Bytes::from_static(b"one"), "text/plain")
            .await
            .unwrap();
        store
            .write("b", "o", Bytes::from_static(b"two"), "text/plain")
            .await
            .unwrap();
        let stored = store.read_small("b", "o").await.unwrap();
        assert_eq!(stored, Some(Bytes::from_static(b"two")));
    }

    #[test]
    fn local_rejects_escaping_names() {
        let store = LocalDirStore::new("/tmp/root");
        let cases = [
            ("b", "../x"),
            ("b", "a/../../x"),
            ("b", "/etc/passwd"),
            ("b", "./x"),
            ("b", ""),
            ("b", "dir/"),
            ("..", "x"),
            ("a/b", "x"),
            ("", "x"),
            (".hidden", "x"),
        ];
        for (bucket, name) in cases {
            let result = store.object_path(bucket, name);
            assert!(
                matches!(result, Err(StorageError::Permanent(_))),
                "{bucket:?} {name:?} gave {result:?}"
            );
        }
        assert_eq!(
            store.object_path("b", "incoming/t/a.csv").unwrap(),
            PathBuf::from("/tmp/root/b/incoming/t/a.csv")
        );
    }

    /// Starts a server on 127.0.0.1 that reads each request's headers, writes `reply` (if
    /// any) and then holds the connection open without sending anything more.
    async fn stalling_server(reply: Option<&'static str>) -> String {
        use tokio::io::AsyncReadExt;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 4096];
                    while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => request.extend_from_slice(&buffer[..read]),
                        }
                    }
                    if let Some(reply) = reply {
                        let _ = socket.write_all(reply.as_bytes()).await;
                    }
                    // Keep the socket open and drain what the client sends.
                    while socket.read(&mut buffer).await.is_ok_and(|read| read > 0) {}
                });
            }
        });
        addr.to_string()
    }

    async fn stalling_store(reply: Option<&'static str>) -> GcsStore {
        crate::server::install_crypto_provider();
        let host = stalling_server(reply).await;
        GcsStore::connect(Some(&host))
            .await
            .unwrap()
            .with_request_timeout(Duration::from_millis(300))
            .with_read_idle_timeout(Duration::from_millis(300))
    }

    /// Fails the test instead of hanging when a call ignores its time limit.
    async fn within_5s<T>(call: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("the call returned within 5 s")
    }

    fn transient_message<T: std::fmt::Debug>(result: Result<T, StorageError>) -> String {
        match result {
            Err(StorageError::Transient(message)) => message,
            other => panic!("expected a transient error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn gcs_calls_time_out_on_silent_server() {
        let store = stalling_store(None).await;

        let write = within_5s(store.write("b", "o", Bytes::from_static(b"x"), "text/plain")).await;
        assert_eq!(
            transient_message(write),
            "gs://b/o: request timed out after 300ms"
        );

        let data = Bytes::from_static(b"x");
        let claim = within_5s(store.write_if_absent("b", "o", data, "text/plain")).await;
        assert_eq!(
            transient_message(claim),
            "gs://b/o: request timed out after 300ms"
        );

        let opened = within_5s(store.open("b", "o", None)).await;
        assert_eq!(
            transient_message(opened.map(|(meta, _)| meta)),
            "gs://b/o: request timed out after 300ms"
        );

        let small = within_5s(store.read_small("b", "o")).await;
        assert_eq!(
            transient_message(small),
            "gs://b/o: request timed out after 300ms"
        );
    }

    #[tokio::test]
    async fn gcs_read_times_out_between_chunks() {
        // Headers and 3 of the 10 announced bytes, then nothing.
        let reply = "HTTP/1.1 200 OK\r\nx-goog-generation: 7\r\n\
                     x-goog-stored-content-length: 10\r\ncontent-length: 10\r\n\r\nabc";
        let store = stalling_store(Some(reply)).await;

        let (meta, mut reader) = within_5s(store.open("b", "o", None)).await.unwrap();
        assert_eq!(meta.generation, 7);
        let mut contents = Vec::new();
        let error = within_5s(reader.read_to_end(&mut contents))
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "storage request failed and may succeed later: gs://b/o: waiting for the next \
             chunk timed out after 300ms"
        );
        assert_eq!(contents, b"abc");

        let small = within_5s(store.read_small("b", "o")).await;
        assert_eq!(
            transient_message(small),
            "gs://b/o: waiting for the next chunk timed out after 300ms"
        );
    }

    #[tokio::test]
    async fn memory_put_open_and_generations() {
        let store = MemoryStore::new();
        let metadata = BTreeMap::from([("tenant_id".to_string(), "t1".to_string())]);
        let first = store.put(
            "b",
            "o",
            "one",
            ObjectMeta {
                metadata: metadata.clone(),
                ..ObjectMeta::default()
            },
        );
        let second = store.put("b", "o", "two", ObjectMeta::default());
        assert_eq!((first, second), (1, 2));

        let (meta, reader) = store.open("b", "o", Some(2)).await.unwrap();
        assert_eq!(meta.size, 3);
        assert_eq!(read_all(reader).await, b"two");
        let old = store.open("b", "o", Some(1)).await;
        assert!(matches!(old, Err(StorageError::NotFound { .. })));
    }

    #[tokio::test]
    async fn memory_write_if_absent_and_failures() {
        let store = MemoryStore::new();
        let created = store
            .write_if_absent("b", "x", Bytes::from_static(b"1"), "text/plain")
            .await
            .unwrap();
        let again = store
            .write_if_absent("b", "x", Bytes::from_static(b"2"), "text/plain")
            .await
            .unwrap();
        assert_eq!(created, WriteOutcome::Created);
        assert_eq!(again, WriteOutcome::AlreadyExists);
        assert_eq!(store.list("b", ""), vec!["x".to_string()]);

        store.fail_next(StorageError::Transient("unavailable".into()));
        let failed = store.read_small("b", "x").await;
        assert!(matches!(failed, Err(StorageError::Transient(_))));
        let recovered = store.read_small("b", "x").await.unwrap();
        assert_eq!(recovered, Some(Bytes::from_static(b"1")));
    }
}
