//! Cloud Storage emulator administration over the JSON API: buckets, uploads with metadata,
//! listing and reading objects.
//!
//! fake-gcs-server does not serve the gRPC API that the official client's `StorageControl`
//! needs, so bucket creation and listing go through these REST calls.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;

use crate::require_env;

/// An object resource as the JSON API returns it (`generation` and `size` are strings there).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectResource {
    pub bucket: String,
    pub name: String,
    pub generation: String,
    #[serde(default)]
    pub size: String,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub content_encoding: Option<String>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
}

impl ObjectResource {
    pub fn generation_number(&self) -> i64 {
        self.generation
            .parse()
            .unwrap_or_else(|e| panic!("object generation {:?}: {e}", self.generation))
    }
}

/// Options of an upload beyond name and bytes.
#[derive(Debug, Clone, Default)]
pub struct Upload {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    /// Custom metadata, such as `tenant_id`.
    pub metadata: BTreeMap<String, String>,
}

/// The Cloud Storage emulator named by `STORAGE_EMULATOR_HOST`.
#[derive(Debug, Clone)]
pub struct StorageEmulator {
    /// `http://host:port`, without a trailing slash.
    pub endpoint: String,
    pub project: String,
    http: reqwest::Client,
}

impl StorageEmulator {
    /// Reads `STORAGE_EMULATOR_HOST` and `GOOGLE_CLOUD_PROJECT`, panicking when one is missing.
    pub fn from_env() -> Self {
        let host = require_env("STORAGE_EMULATOR_HOST");
        let project = require_env("GOOGLE_CLOUD_PROJECT");
        let endpoint = if host.starts_with("http://") || host.starts_with("https://") {
            host.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", host.trim_end_matches('/'))
        };
        Self {
            endpoint,
            project,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = reqwest::Url::parse(&self.endpoint).expect("a valid emulator URL");
        {
            let mut path = url.path_segments_mut().expect("an http URL");
            path.clear();
            // `push` percent-encodes each segment, so `/` inside an object name becomes `%2F`.
            for segment in segments {
                path.push(segment);
            }
        }
        url
    }

    /// Creates a bucket, panicking on any failure.
    pub async fn create_bucket(&self, bucket: &str) {
        let mut url = self.url(&["storage", "v1", "b"]);
        url.query_pairs_mut().append_pair("project", &self.project);
        let response = self
            .http
            .post(url)
            .json(&serde_json::json!({ "name": bucket }))
            .send()
            .await
            .expect("create bucket request");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "creating bucket {bucket} failed with {status}: {body}"
        );
    }

    /// Uploads an object with a multipart upload, so content type, content encoding and custom
    /// metadata are stored with it, and returns the stored object resource.
    pub async fn upload(
        &self,
        bucket: &str,
        name: &str,
        data: impl Into<Bytes>,
        options: Upload,
    ) -> ObjectResource {
        let data = data.into();
        let mut resource = serde_json::json!({ "name": name });
        if let Some(content_type) = &options.content_type {
            resource["contentType"] = content_type.clone().into();
        }
        if let Some(content_encoding) = &options.content_encoding {
            resource["contentEncoding"] = content_encoding.clone().into();
        }
        if !options.metadata.is_empty() {
            resource["metadata"] = serde_json::to_value(&options.metadata).expect("metadata");
        }
        let media_type = options
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".to_string());

        let boundary = format!("boundary-{}", uuid::Uuid::new_v4().simple());
        let mut body = Vec::with_capacity(data.len() + 512);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{resource}\r\n\
                 --{boundary}\r\nContent-Type: {media_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());

        let mut url = self.url(&["upload", "storage", "v1", "b", bucket, "o"]);
        url.query_pairs_mut().append_pair("uploadType", "multipart");
        let response = self
            .http
            .post(url)
            .header(
                "content-type",
                format!("multipart/related; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .expect("upload request");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "uploading gs://{bucket}/{name} failed with {status}: {text}"
        );
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("upload response is not an object resource ({e}): {text}"))
    }

    /// Returns the object resource, or `None` when the object does not exist.
    pub async fn object(&self, bucket: &str, name: &str) -> Option<ObjectResource> {
        let url = self.url(&["storage", "v1", "b", bucket, "o", name]);
        let response = self.http.get(url).send().await.expect("get object request");
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "reading gs://{bucket}/{name} failed with {status}: {text}"
        );
        Some(
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("object resource ({e}): {text}")),
        )
    }

    /// Lists the objects of `bucket` whose names start with `prefix`, following page tokens.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Vec<ObjectResource> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Page {
            #[serde(default)]
            items: Vec<ObjectResource>,
            #[serde(default)]
            next_page_token: Option<String>,
        }

        let mut objects = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut url = self.url(&["storage", "v1", "b", bucket, "o"]);
            url.query_pairs_mut().append_pair("prefix", prefix);
            if let Some(token) = &page_token {
                url.query_pairs_mut().append_pair("pageToken", token);
            }
            let response = self
                .http
                .get(url)
                .send()
                .await
                .expect("list objects request");
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            assert!(
                status.is_success(),
                "listing gs://{bucket}/{prefix} failed with {status}: {text}"
            );
            let page: Page =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("object list ({e}): {text}"));
            objects.extend(page.items);
            match page.next_page_token {
                Some(token) if !token.is_empty() => page_token = Some(token),
                _ => break,
            }
        }
        objects
    }

    /// Reads an object's bytes as stored, or `None` when it does not exist.
    pub async fn read(&self, bucket: &str, name: &str) -> Option<Bytes> {
        let mut url = self.url(&["storage", "v1", "b", bucket, "o", name]);
        url.query_pairs_mut().append_pair("alt", "media");
        let response = self
            .http
            .get(url)
            // Without this, an object stored with `Content-Encoding: gzip` may be decompressed.
            .header("accept-encoding", "gzip")
            .send()
            .await
            .expect("read object request");
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        let status = response.status();
        assert!(
            status.is_success(),
            "reading gs://{bucket}/{name} failed with {status}"
        );
        Some(response.bytes().await.expect("object bytes"))
    }
}
