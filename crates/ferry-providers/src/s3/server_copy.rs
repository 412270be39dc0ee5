//! Server-side copy: CopyObject for one request, UploadPartCopy in parallel for large objects.

use super::client::*;
use super::*;
use crate::{Multipart, ProviderError, PutAttrs, Result, ServerCopied, ServerCopy, unquote};
use async_trait::async_trait;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedPart};
use ferry_core::{Checksums, ErrorClass, FailureKind, Limits, Location, ObjectEntry, PartPlan};
use futures::StreamExt;

/// Characters kept as they are in an `x-amz-copy-source` key: unreserved ones and `/`.
const COPY_SOURCE_KEEP: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

/// Server-side copies issued at once for one object's parts.
const COPY_PARTS_IN_FLIGHT: usize = 8;

#[async_trait]
impl ServerCopy for S3Provider {
    /// A location of this service reached the same way: the same endpoint, the same profile.
    fn copies_from(&self, source: &Location, connect: &crate::Connect) -> bool {
        source.scheme == ferry_core::Scheme::S3 && self.connect.same_way(connect)
    }

    async fn copy_from(
        &self,
        source: &Location,
        object: &ObjectEntry,
        class: Option<&str>,
        plan: &PartPlan,
        started: &crate::UploadStarted,
    ) -> Result<ServerCopied> {
        let key = object.key.as_str();
        let count = copy_parts(object, plan, &self.limits())?;
        let full = self.full_key(key);
        let mut copy_source =
            format!("{}/{}", source.bucket, percent_encoding::utf8_percent_encode(&source.key_for(key), COPY_SOURCE_KEEP));
        if let Some(v) = &object.version {
            copy_source.push_str(&format!("?versionId={}", percent_encoding::utf8_percent_encode(v, COPY_SOURCE_KEEP)));
        }
        // The copy is of the very version the HEAD saw, or nothing (412, retried: the retry's
        // HEAD then sees the change and the object starts over).
        let if_match = object.etag.as_ref().map(|e| format!("\"{e}\""));
        if count == 0 {
            let o = request(&self.run, 0, || async {
                let req = self.client.copy_object().bucket(&self.location.bucket).key(&full).copy_source(&copy_source);
                let req = req.set_copy_source_if_match(if_match.clone()).checksum_algorithm(ChecksumAlgorithm::Crc32C);
                // Headers and metadata are copied (MetadataDirective COPY); tags are replaced
                // by those asked for, when asked.
                let req = req
                    .set_tagging_directive(object.tags.as_ref().map(|_| aws_sdk_s3::types::TaggingDirective::Replace))
                    .set_tagging(object.tags.as_ref().filter(|t| !t.is_empty()).map(super::tagging))
                    // Without it, S3 writes the copy in STANDARD, whatever the source's class.
                    .set_storage_class(self.storage_class(class))
                    .set_server_side_encryption(self.sse())
                    .set_ssekms_key_id(self.sse_key());
                req.send().await.map_err(|e| self.failed("copy", key, e))
            })
            .await?;
            let r = o.copy_object_result();
            return Ok(ServerCopied {
                etag: r.and_then(|r| r.e_tag()).map(unquote),
                checksums: Checksums {
                    crc32c: crc_hex(r.and_then(|r| r.checksum_crc32_c())),
                    crc64nvme: crc64_hex(r.and_then(|r| r.checksum_crc64_nvme())),
                    ..Checksums::default()
                },
                parts: 0,
                version: o.version_id().map(str::to_string),
            });
        }
        // A copy in parts starts a new upload: it carries what the HEAD saw, and the tags asked
        // for, else the source's (one GetObjectTagging: a HEAD does not give them).
        let tags = match &object.tags {
            Some(tags) => tags.clone(),
            None => self.tags_of(&source.bucket, &source.key_for(key), key).await?,
        };
        let attrs = PutAttrs {
            content_type: object.content_type.clone(),
            metadata: object.metadata.clone(),
            headers: object.headers.clone(),
            tags: Some(tags),
            storage_class: class.map(str::to_string),
            ..PutAttrs::default()
        };
        let upload = Multipart::start(self, key, &attrs, object.size, "").await?;
        let upload_id = upload.upload_id().expect("S3 uploads have ids");
        if let Err(e) = started(upload_id.clone()).await {
            let _ = self.abort_upload(key, &upload_id).await;
            return Err(e);
        }
        let copied = async {
            let parts: Vec<(u64, Option<String>, Option<String>)> = futures::stream::iter(0..plan.count())
                .map(|i| {
                    let range = plan.range(i);
                    let (copy_source, if_match, full, upload_id) = (&copy_source, &if_match, &full, &upload_id);
                    async move {
                        let o = request(&self.run, 0, || async {
                            let req = self.client.upload_part_copy().bucket(&self.location.bucket).key(full).upload_id(upload_id);
                            let req = req.part_number(i as i32 + 1).copy_source(copy_source);
                            let req = req.copy_source_range(format!("bytes={}-{}", range.start, range.end - 1));
                            req.set_copy_source_if_match(if_match.clone()).send().await.map_err(|e| self.failed("copy part", key, e))
                        })
                        .await?;
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
            let completed: Vec<CompletedPart> = parts
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
            let done = request(&self.run, 0, || async {
                complete_upload(&self.client, &self.location.bucket, &full, &upload_id, completed.clone())
                    .await
                    .map_err(|e| self.failed("complete copy", key, e))
            })
            .await?;
            let crc32c = crcs.map(|crcs| {
                let whole = parts
                    .iter()
                    .zip(crcs)
                    .fold(None, |acc: Option<u32>, ((len, _, _), crc)| Some(acc.map_or(crc, |a| ferry_core::crc32c_combine(a, crc, *len))));
                ferry_core::digest::crc32c_hex(whole.unwrap_or(0))
            });
            Ok::<_, ProviderError>(ServerCopied {
                etag: done.etag,
                checksums: Checksums { crc32c, ..Checksums::default() },
                parts: count,
                version: done.version,
            })
        }
        .await;
        if copied.is_err() {
            let _ = self.abort_upload(key, &upload_id).await;
        }
        copied
    }
}

/// The UploadPartCopy requests that copy `object` in the parts of `plan`; 0: one CopyObject.
/// Refused before any request when the plan is not the object's or S3 would not take it (a
/// request over 5 GiB, more than 10,000 parts): S3 would refuse it only after the parts
/// before the first one out of bounds were copied and paid for.
fn copy_parts(object: &ObjectEntry, plan: &PartPlan, limits: &Limits) -> Result<u32> {
    let refuse = |detail: String| ProviderError::Request {
        provider: PROVIDER,
        op: "copy",
        key: object.key.clone(),
        detail,
        class: ErrorClass::PerObject,
        kind: FailureKind::NoPartPlan,
    };
    if plan.object_size != object.size {
        return Err(refuse(format!("a part plan for {} bytes, the object has {}", plan.object_size, object.size)));
    }
    let parts = plan.check(limits).map_err(|e| refuse(e.to_string()))?;
    Ok(if parts == 1 { 0 } else { parts })
}

#[cfg(test)]
mod tests {
    use ferry_core::{ObjectEntry, PartPlan};

    const MIB: u64 = 1 << 20;

    fn copy_parts(object: &ObjectEntry, plan: &PartPlan) -> crate::Result<u32> {
        super::copy_parts(object, plan, &crate::s3::LIMITS)
    }

    fn object(size: u64) -> ObjectEntry {
        ObjectEntry { key: "big.bin".into(), size, ..ObjectEntry::default() }
    }

    #[test]
    fn a_copy_beyond_s3s_limits_is_refused_before_a_request() {
        // Issue 13: a plan of 12,000 parts is more than S3's 10,000 part numbers; the old copy
        // sent 10,000 UploadPartCopy requests before S3 refused the rest.
        let size = 12_000 * 8 * MIB;
        let e = copy_parts(&object(size), &PartPlan { object_size: size, part_size: 8 * MIB }).unwrap_err();
        assert!(e.to_string().contains("at most 10000"), "{e}");
        // One request (CopyObject) or parts (UploadPartCopy) over 5 GiB: S3 takes neither.
        let size = 6 << 30;
        assert!(copy_parts(&object(size), &PartPlan { object_size: size, part_size: size }).is_err());
        assert!(copy_parts(&object(2 * size), &PartPlan { object_size: 2 * size, part_size: size }).is_err());
        // A plan that is not the object's is the caller's mistake, not a copy of other ranges.
        assert!(copy_parts(&object(100 * MIB), &PartPlan { object_size: 200 * MIB, part_size: 8 * MIB }).is_err());
        // Plans S3 takes: one request up to 5 GiB, 10,000 parts, and the plan the engine
        // chooses for the 12,000-part object.
        assert_eq!(copy_parts(&object(5 << 30), &PartPlan { object_size: 5 << 30, part_size: 5 << 30 }).unwrap(), 0);
        let size = 10_000 * 8 * MIB;
        assert_eq!(copy_parts(&object(size), &PartPlan { object_size: size, part_size: 8 * MIB }).unwrap(), 10_000);
        let size = 12_000 * 8 * MIB;
        let chosen = PartPlan::choose(size, Some(8 * MIB), &crate::s3::LIMITS);
        assert_eq!(copy_parts(&object(size), &chosen).unwrap() as u64, chosen.count());
    }
}
