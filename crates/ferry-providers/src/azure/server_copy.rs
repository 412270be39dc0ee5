//! Server-side copy: Copy Blob, waited for until it is done.

use super::client::blob_entry;
use super::*;
use crate::{Result, ServerCopied, ServerCopy};
use async_trait::async_trait;
use ferry_core::{Checksums, Location, ObjectEntry, PartPlan};

#[async_trait]
impl ServerCopy for AzureProvider {
    /// A location of this service reached the same way: the same endpoint, the same profile.
    fn copies_from(&self, source: &Location, connect: &crate::Connect) -> bool {
        source.scheme == ferry_core::Scheme::Azure && self.connect.same_way(connect)
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
        self.path(key)?;
        // Copy Blob does not copy index tags: the source's are read and set on the copy.
        let tags = match &object.tags {
            Some(tags) => tags.clone(),
            None => self.blocks.tags(Some(&source.bucket), &source.key_for(key), key).await?,
        };
        let head = self
            .blocks
            .copy_blob(&self.location.key_for(key), key, (&source.bucket, &source.key_for(key)), object.etag.as_deref(), Some(&tags), class)
            .await?;
        let copy = blob_entry(key, &head);
        Ok(ServerCopied {
            etag: copy.etag,
            checksums: Checksums { md5: copy.checksums.md5, ..Checksums::default() },
            parts: 0,
            version: copy.version,
        })
    }
}
