//! Multipart uploads: start, resume from ListParts, stale uploads, abort, and the upload handle.

use super::client::*;
use super::*;
use crate::{Multipart, MultipartUpload, PartReceipt, ProviderError, PutAttrs, PutReceipt, Result, unquote};
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedPart};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use ferry_core::{ErrorClass, FailureKind};
use futures::future::BoxFuture;

#[async_trait]
impl Multipart for S3Provider {
    async fn start(&self, key: &str, attrs: &PutAttrs, _size: u64, _id: &str) -> Result<Box<dyn MultipartUpload>> {
        let full = self.full_key(key);
        let req = self.client.create_multipart_upload().bucket(&self.location.bucket).key(&full);
        let mut req = super::object_attrs!(req.checksum_algorithm(ChecksumAlgorithm::Crc32C), self, attrs);
        for (k, v) in &attrs.metadata {
            req = req.metadata(k, v);
        }
        let o = request(&self.run, 0, || async { req.clone().send().await.map_err(|e| self.failed("create multipart upload", key, e)) })
            .await?;
        let upload_id = o.upload_id().ok_or_else(|| ProviderError::Request {
            provider: PROVIDER,
            op: "create multipart upload",
            key: key.to_string(),
            detail: "no upload id in the answer".into(),
            class: ErrorClass::Restart,
            kind: FailureKind::Other,
        })?;
        Ok(self.upload(key, upload_id))
    }

    async fn resume(
        &self,
        key: &str,
        upload_id: &str,
        _attrs: &PutAttrs,
        _size: u64,
        recorded: &[PartReceipt],
    ) -> Result<Option<(Box<dyn MultipartUpload>, Vec<PartReceipt>)>> {
        let full = self.full_key(key);
        if is_ferry_id(upload_id) {
            // The journal holds only the id ferry chose before CreateMultipartUpload: the process
            // died before S3's id was recorded. Abort what S3 lists for this key, if it lists.
            return if self.abort_unrecorded(key).await {
                Ok(None)
            } else {
                Err(ProviderError::UnlistedUpload { provider: PROVIDER, key: key.to_string() })
            };
        }
        let mut held = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = request(&self.run, 0, || async {
                let req = self.client.list_parts().bucket(&self.location.bucket).key(&full).upload_id(upload_id);
                req.set_part_number_marker(marker.clone()).send().await.map_err(|e| self.failed("list parts", key, e))
            });
            let page = match page.await {
                Ok(p) => p,
                // NoSuchUpload; some S3-compatibles deny rather than 404 an upload id they do
                // not know.
                Err(ProviderError::NotFound { .. } | ProviderError::Denied { .. }) => return Ok(None),
                Err(other) => return Err(other),
            };
            for p in page.parts() {
                let Some(index) = p.part_number().and_then(|n| u32::try_from(n).ok()).and_then(|n| n.checked_sub(1)) else { continue };
                let size = p.size().unwrap_or(0).max(0) as u64;
                let etag = p.e_tag().map(unquote);
                // What the journal recorded of this part: the same ETag, or — where the service
                // lists parts without their ETags (s3s-fs) — the same size. A listed part is
                // one the service acknowledged whole; ferry forgets a journaled part before it
                // sends different bytes for it, so the journal's is the one listed.
                let journaled = recorded
                    .iter()
                    .find(|r| r.index == index && r.size == size && etag.as_ref().is_none_or(|e| *e == r.id) && !r.id.is_empty());
                // The part's checksum as S3 holds it, else the journal's; a part known by
                // neither is sent again.
                let crc = crc_hex(p.checksum_crc32_c()).and_then(|h| u32::from_str_radix(&h, 16).ok()).or(journaled.map(|r| r.crc32c));
                let id = etag.or_else(|| journaled.map(|r| r.id.clone()));
                if let (Some(crc32c), Some(id)) = (crc, id) {
                    held.push(PartReceipt { index, id, size, crc32c });
                }
            }
            match (page.is_truncated(), page.next_part_number_marker()) {
                (Some(true), Some(next)) => marker = Some(next.to_string()),
                _ => break,
            }
        }
        // ListParts answers are not always sorted (s3s-fs).
        held.sort_by_key(|p| p.index);
        Ok(Some((self.upload(key, upload_id), held)))
    }

    async fn stale_uploads(&self, before: DateTime<Utc>) -> Result<Vec<crate::OpenUpload>> {
        let prefix_len = self.location.prefix.len();
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = request(&self.run, 0, || async {
                let req = self.client.list_multipart_uploads().bucket(&self.location.bucket).prefix(&self.location.prefix);
                let req = req.set_key_marker(key_marker.clone()).set_upload_id_marker(id_marker.clone());
                req.send().await.map_err(|e| self.failed("list multipart uploads", &self.location.prefix, e))
            })
            .await
            .map_err(|e| match e {
                ProviderError::Request { kind: FailureKind::Unsupported, .. } => ProviderError::Config {
                    provider: PROVIDER,
                    detail: format!("{} cannot list multipart uploads (ListMultipartUploads is not implemented there)", self.endpoint),
                },
                other => other,
            })?;
            for u in page.uploads() {
                let (Some(key), Some(id)) = (u.key(), u.upload_id()) else { continue };
                let initiated = to_chrono(u.initiated());
                if initiated.is_none_or(|t| t < before) {
                    out.push(crate::OpenUpload {
                        key: key.get(prefix_len..).unwrap_or(key).to_string(),
                        upload_id: id.to_string(),
                        initiated,
                    });
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(out);
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
        }
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<()> {
        match self.upload(key, upload_id).abort().await {
            Err(ProviderError::NotFound { .. }) => Ok(()),
            Err(ProviderError::Request { kind: FailureKind::NotFound, .. }) => Ok(()),
            other => other,
        }
    }
}

/// Ids ferry chooses (32 hex digits) never look like an S3 upload id.
fn is_ferry_id(upload_id: &str) -> bool {
    upload_id.len() == 32 && upload_id.chars().all(|c| c.is_ascii_hexdigit())
}

impl S3Provider {
    /// Aborts the uploads S3 lists for exactly `key` (ListMultipartUploads); `false` when the
    /// service cannot list them (s3s-fs answers 501), leaving them to a lifecycle rule.
    async fn abort_unrecorded(&self, key: &str) -> bool {
        let full = self.full_key(key);
        let listed = request(&self.run, 0, || async {
            let req = self.client.list_multipart_uploads().bucket(&self.location.bucket).prefix(&full);
            req.send().await.map_err(|e| self.failed("list multipart uploads", key, e))
        });
        let Ok(listed) = listed.await else {
            return false;
        };
        for u in listed.uploads() {
            if let (Some(k), Some(id)) = (u.key(), u.upload_id())
                && k == full
            {
                let _ = self.upload(key, id).abort().await;
            }
        }
        true
    }

    fn upload(&self, key: &str, upload_id: &str) -> Box<S3Upload> {
        Box::new(S3Upload {
            client: self.client.clone(),
            bucket: self.location.bucket.clone(),
            full_key: self.full_key(key),
            key: key.to_string(),
            upload_id: upload_id.to_string(),
            endpoint: self.endpoint.clone(),
            run: self.run.clone(),
        })
    }
}

struct S3Upload {
    client: Client,
    bucket: String,
    full_key: String,
    key: String,
    upload_id: String,
    endpoint: String,
    run: std::sync::Arc<crate::RunContext>,
}

#[async_trait]
impl MultipartUpload for S3Upload {
    fn upload_id(&self) -> Option<String> {
        Some(self.upload_id.clone())
    }

    fn put_part(&mut self, index: u32, _offset: u64, data: Bytes, crc32c: u32) -> BoxFuture<'static, Result<PartReceipt>> {
        let (client, full_key, upload_id) = (self.client.clone(), self.full_key.clone(), self.upload_id.clone());
        let (endpoint, bucket, key) = (self.endpoint.clone(), self.bucket.clone(), self.key.clone());
        let run = self.run.clone();
        Box::pin(async move {
            let build = || {
                client
                    .upload_part()
                    .bucket(&bucket)
                    .key(&full_key)
                    .upload_id(&upload_id)
                    .part_number(index as i32 + 1)
                    .content_length(data.len() as i64)
                    .checksum_crc32_c(b64_crc(crc32c))
                    .body(ByteStream::from(data.clone()))
            };
            let etag = request(&run, data.len(), || async {
                let o = build()
                    .customize()
                    .disable_payload_signing()
                    .send()
                    .await
                    .map_err(|e| failed(&endpoint, &bucket, "upload part", &key, e))?;
                let etag = o.e_tag().map(unquote).unwrap_or_default();
                acknowledged(o.checksum_crc32_c(), Some(&etag), &data, crc32c)
                    .map_err(|detail| ProviderError::corrupted(PROVIDER, "upload part", format!("{key} part {}", index + 1), detail))?;
                Ok(etag)
            })
            .await?;
            Ok(PartReceipt { index, id: etag, size: data.len() as u64, crc32c })
        })
    }

    async fn complete(self: Box<Self>, parts: Vec<PartReceipt>) -> Result<PutReceipt> {
        let completed: Vec<CompletedPart> = parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.index as i32 + 1)
                    .e_tag(format!("\"{}\"", p.id))
                    .checksum_crc32_c(b64_crc(p.crc32c))
                    .build()
            })
            .collect();
        request(&self.run, 0, || async {
            complete_upload(&self.client, &self.bucket, &self.full_key, &self.upload_id, completed.clone())
                .await
                .map_err(|e| failed(&self.endpoint, &self.bucket, "complete multipart upload", &self.key, e))
        })
        .await
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        request(&self.run, 0, || async {
            let req = self.client.abort_multipart_upload().bucket(&self.bucket).key(&self.full_key).upload_id(&self.upload_id);
            req.send().await.map_err(|e| failed(&self.endpoint, &self.bucket, "abort multipart upload", &self.key, e))
        })
        .await?;
        Ok(())
    }
}
