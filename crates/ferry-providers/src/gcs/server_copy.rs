//! Server-side copy: rewrite calls until the service says done.

use crate::{ProviderError, Result, ServerCopied, ServerCopy};
use async_trait::async_trait;
use ferry_core::{Checksums, ErrorClass, FailureKind, Location, ObjectEntry, PartPlan};
use serde::Deserialize;

use super::client::*;
use super::*;

/// What a rewrite call answers: done with the new object, or a token to call again with.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RewriteAnswer {
    done: bool,
    rewrite_token: Option<String>,
    resource: Option<GcsObject>,
}

/// Rewrite calls one object may take (GCS copies up to ~1 GiB per call between locations or
/// storage classes, and in one call otherwise): a bound, so the loop always ends.
const MAX_REWRITE_CALLS: u32 = 100_000;

#[async_trait]
impl ServerCopy for GcsProvider {
    /// A location of this service reached the same way: the same endpoint, the same profile.
    fn copies_from(&self, source: &Location, connect: &crate::Connect) -> bool {
        source.scheme == ferry_core::Scheme::Gcs && self.connect.same_way(connect)
    }

    async fn copy_from(
        &self,
        source: &Location,
        object: &ObjectEntry,
        class: Option<&str>,
        _plan: &PartPlan,
        _started: &crate::UploadStarted,
    ) -> Result<ServerCopied> {
        let key = object.key.as_str();
        let c = &self.client;
        let url = format!(
            "{}/storage/v1/b/{}/o/{}/rewriteTo/b/{}/o/{}",
            c.base,
            enc(&source.bucket),
            enc(&source.key_for(key)),
            enc(&c.bucket),
            enc(&self.location.key_for(key))
        );
        // A class asked for goes in the destination resource of the rewrite; the resource then
        // carries the source's headers and metadata too (a rewrite with a resource writes the
        // resource's). Without a class, no body: the service copies them itself.
        let resource = class.or(c.storage_class.as_deref()).map(|_| {
            let attrs = crate::PutAttrs {
                content_type: object.content_type.clone(),
                metadata: object.metadata.clone(),
                headers: object.headers.clone(),
                ..crate::PutAttrs::default()
            };
            let mut resource = serde_json::json!({});
            super::client::set_attrs(&mut resource, &attrs);
            c.set_class(&mut resource, class);
            resource
        });
        let mut token: Option<String> = None;
        for _ in 0..MAX_REWRITE_CALLS {
            // The copy is of the generation the HEAD saw, or nothing (412, retried: the retry's
            // HEAD then sees the change and the object starts over).
            let mut query: Vec<(&str, String)> = Vec::new();
            // A pinned object is that generation, live or not (a rollback puts one back).
            if let Some(generation) = &object.version {
                query.push((if object.pinned { "sourceGeneration" } else { "ifSourceGenerationMatch" }, generation.clone()));
            }
            if let Some(t) = &token {
                query.push(("rewriteToken", t.clone()));
            }
            if let Some(k) = &c.kms_key {
                query.push(("destinationKmsKeyName", k.clone()));
            }
            let resp = c
                .send("copy", key, || match &resource {
                    Some(body) => c.http.post(&url).query(&query).json(body),
                    None => c.http.post(&url).query(&query).header("content-length", "0"),
                })
                .await?;
            let answer: RewriteAnswer = c.json("copy", key, resp).await?;
            if answer.done {
                let o = answer.resource.unwrap_or_default();
                return Ok(ServerCopied {
                    etag: o.etag.clone(),
                    checksums: Checksums {
                        crc32c: b64_to_hex(o.crc32c.as_deref()),
                        md5: b64_to_hex(o.md5_hash.as_deref()),
                        ..Checksums::default()
                    },
                    parts: 0,
                    version: o.generation.clone(),
                });
            }
            token = Some(answer.rewrite_token.ok_or_else(|| ProviderError::Request {
                provider: PROVIDER,
                op: "copy",
                key: key.to_string(),
                detail: "the rewrite is not done and gave no token to continue with".into(),
                class: ErrorClass::Restart,
                kind: FailureKind::Other,
            })?);
        }
        Err(ProviderError::Request {
            provider: PROVIDER,
            op: "copy",
            key: key.to_string(),
            detail: format!("the rewrite was not done after {MAX_REWRITE_CALLS} calls"),
            class: ErrorClass::Restart,
            kind: FailureKind::Other,
        })
    }
}
