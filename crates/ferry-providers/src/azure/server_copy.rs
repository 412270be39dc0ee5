//! Server-side copy: Copy Blob, waited for until it is done.

use super::client::blob_entry;
use super::*;
use crate::{Result, ServerCopied, ServerCopy};
use async_trait::async_trait;
use ferry_core::{Location, ObjectEntry};

#[async_trait]
impl ServerCopy for AzureProvider {
    async fn copy_from(
        &self,
        source: &Location,
        object: &ObjectEntry,
        _part_size: u64,
        _started: &(dyn for<'s> Fn(&'s str) -> Result<()> + Sync),
    ) -> Result<ServerCopied> {
        let key = object.key.as_str();
        self.path(key)?;
        let head =
            self.blocks.copy_blob(&self.location.key_for(key), key, &source.bucket, &source.key_for(key), object.etag.as_deref()).await?;
        let copy = blob_entry(key, &head);
        Ok(ServerCopied { etag: copy.etag, md5: copy.md5, crc32c: None, crc64nvme: None, parts: 0 })
    }
}
