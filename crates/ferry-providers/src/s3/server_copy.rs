//! Server-side copy: CopyObject for one request, UploadPartCopy in parallel for large objects.

use super::client::*;
use super::*;
use crate::{Multipart, ProviderError, PutAttrs, Result, ServerCopied, ServerCopy, unquote};
use async_trait::async_trait;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedPart};
use ferry_core::{ErrorClass, Location, ObjectEntry};
use futures::StreamExt;

/// Characters kept as they are in an `x-amz-copy-source` key: unreserved ones and `/`.
const COPY_SOURCE_KEEP: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

/// Server-side copies issued at once for one object's parts.
const COPY_PARTS_IN_FLIGHT: usize = 8;

#[async_trait]
impl ServerCopy for S3Provider {
    async fn copy_from(
        &self,
        source: &Location,
        object: &ObjectEntry,
        part_size: u64,
        started: &(dyn for<'s> Fn(&'s str) -> Result<()> + Sync),
    ) -> Result<ServerCopied> {
        let key = object.key.as_str();
        let full = self.full_key(key);
        let mut copy_source =
            format!("{}/{}", source.bucket, percent_encoding::utf8_percent_encode(&source.key_for(key), COPY_SOURCE_KEEP));
        if let Some(v) = &object.version {
            copy_source.push_str(&format!("?versionId={}", percent_encoding::utf8_percent_encode(v, COPY_SOURCE_KEEP)));
        }
        // The copy is of the very version the HEAD saw, or nothing (412, retried: the retry's
        // HEAD then sees the change and the object starts over).
        let if_match = object.etag.as_ref().map(|e| format!("\"{e}\""));
        if object.size <= part_size {
            self.run.before_request().await;
            let o = self
                .client
                .copy_object()
                .bucket(&self.location.bucket)
                .key(&full)
                .copy_source(&copy_source)
                .set_copy_source_if_match(if_match)
                .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                .send()
                .await
                .map_err(|e| self.error("copy", key, e))?;
            let r = o.copy_object_result();
            return Ok(ServerCopied {
                etag: r.and_then(|r| r.e_tag()).map(unquote),
                crc32c: crc_hex(r.and_then(|r| r.checksum_crc32_c())),
                crc64nvme: crc64_hex(r.and_then(|r| r.checksum_crc64_nvme())),
                md5: None,
                parts: 0,
            });
        }
        let plan = ferry_core::PartPlan { object_size: object.size, part_size };
        let count = plan.parts().map_err(|e| ProviderError::Request {
            provider: PROVIDER,
            op: "copy",
            key: key.to_string(),
            detail: e.to_string(),
            class: ErrorClass::PerObject,
        })?;
        let attrs = PutAttrs { content_type: object.content_type.clone(), metadata: object.metadata.clone(), mode: None };
        let upload = Multipart::start(self, key, &attrs, object.size, "").await?;
        let upload_id = upload.upload_id().expect("S3 uploads have ids");
        if let Err(e) = started(upload_id.as_str()) {
            let _ = self.abort_upload(key, &upload_id).await;
            return Err(e);
        }
        let copied = async {
            let parts: Vec<(u64, Option<String>, Option<String>)> = futures::stream::iter(0..plan.count())
                .map(|i| {
                    let range = plan.range(i);
                    let (copy_source, if_match, full, upload_id) = (&copy_source, &if_match, &full, &upload_id);
                    async move {
                        self.run.before_request().await;
                        let o = self
                            .client
                            .upload_part_copy()
                            .bucket(&self.location.bucket)
                            .key(full)
                            .upload_id(upload_id)
                            .part_number(i as i32 + 1)
                            .copy_source(copy_source)
                            .copy_source_range(format!("bytes={}-{}", range.start, range.end - 1))
                            .set_copy_source_if_match(if_match.clone())
                            .send()
                            .await
                            .map_err(|e| self.error("copy part", key, e))?;
                        let r = o.copy_part_result();
                        let etag = r.and_then(|r| r.e_tag()).map(unquote);
                        Ok::<_, ProviderError>((range.end - range.start, etag, r.and_then(|r| r.checksum_crc32_c()).map(str::to_string)))
                    }
                })
                .buffered(COPY_PARTS_IN_FLIGHT)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<_>>()?;
            // The parts' CRC32Cs combine into the copy's, when the service gave every one.
            let crcs: Option<Vec<u32>> =
                parts.iter().map(|(_, _, c)| crc_hex(c.as_deref()).and_then(|h| u32::from_str_radix(&h, 16).ok())).collect();
            let completed = parts
                .iter()
                .enumerate()
                .map(|(i, (_, etag, crc))| {
                    CompletedPart::builder()
                        .part_number(i as i32 + 1)
                        .set_e_tag(etag.as_ref().map(|e| format!("\"{e}\"")))
                        .set_checksum_crc32_c(crc.clone())
                        .build()
                })
                .collect();
            self.run.take_slot().await;
            let etag = complete_upload(&self.client, &self.location.bucket, &full, &upload_id, completed)
                .await
                .map_err(|e| self.error("complete copy", key, e))?;
            let crc32c = crcs.map(|crcs| {
                let whole = parts
                    .iter()
                    .zip(crcs)
                    .fold(None, |acc: Option<u32>, ((len, _, _), crc)| Some(acc.map_or(crc, |a| ferry_core::crc32c_combine(a, crc, *len))));
                ferry_core::digest::crc32c_hex(whole.unwrap_or(0))
            });
            Ok::<_, ProviderError>(ServerCopied { etag, crc32c, crc64nvme: None, md5: None, parts: count })
        }
        .await;
        if copied.is_err() {
            let _ = self.abort_upload(key, &upload_id).await;
        }
        copied
    }
}
