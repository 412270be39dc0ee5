//! Block uploads with ferry's block ids: start, resume from the uncommitted blocks, commit.

use super::client;
use super::*;
use crate::{Multipart, MultipartUpload, PartReceipt, ProviderError, PutAttrs, PutReceipt, Result};
use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use std::sync::Arc;

#[async_trait]
impl Multipart for AzureProvider {
    /// Blocks are named after the upload id, so nothing exists at Azure until the first block.
    async fn start(&self, key: &str, attrs: &PutAttrs, _size: u64, id: &str) -> Result<Box<dyn MultipartUpload>> {
        self.path(key)?;
        Ok(Box::new(self.upload(key, id, attrs)))
    }

    /// The blob's uncommitted blocks of this upload are held; a block is trusted only with the
    /// CRC32C the journal recorded for it (Azure keeps no CRC32C of a block).
    async fn resume(
        &self,
        key: &str,
        upload_id: &str,
        attrs: &PutAttrs,
        _size: u64,
        recorded: &[PartReceipt],
    ) -> Result<Option<(Box<dyn MultipartUpload>, Vec<PartReceipt>)>> {
        let full = self.location.key_for(key);
        let blocks = self.blocks.uncommitted(&full, key, upload_id).await?;
        let held = blocks
            .into_iter()
            .filter_map(|(index, size)| {
                let r = recorded.iter().find(|r| r.index == index && r.size == size)?;
                Some(PartReceipt { index, id: client::block_id(upload_id, index), size, crc32c: r.crc32c })
            })
            .collect();
        Ok(Some((Box::new(self.upload(key, upload_id, attrs)), held)))
    }

    /// Azure has no call to drop uncommitted blocks; it garbage-collects them after a week, and
    /// a later commit of the blob discards them.
    async fn abort_upload(&self, _key: &str, _upload_id: &str) -> Result<()> {
        Ok(())
    }

    async fn stale_uploads(&self, _before: chrono::DateTime<chrono::Utc>) -> Result<Vec<crate::OpenUpload>> {
        Err(ProviderError::Config {
            provider: PROVIDER,
            detail: "Azure keeps uncommitted blocks out of listings and deletes them after a week by itself".into(),
        })
    }
}

impl AzureProvider {
    fn upload(&self, key: &str, upload_id: &str, attrs: &PutAttrs) -> AzureUpload {
        AzureUpload {
            blocks: self.blocks.clone(),
            full_key: self.location.key_for(key),
            key: key.to_string(),
            upload_id: upload_id.to_string(),
            attrs: attrs.clone(),
        }
    }
}

/// A block blob upload with ferry's own block ids.
struct AzureUpload {
    blocks: Arc<client::BlockClient>,
    full_key: String,
    key: String,
    upload_id: String,
    attrs: PutAttrs,
}

#[async_trait]
impl MultipartUpload for AzureUpload {
    fn upload_id(&self) -> Option<String> {
        Some(self.upload_id.clone())
    }

    fn put_part(&mut self, index: u32, _offset: u64, data: Bytes, crc32c: u32) -> BoxFuture<'static, Result<PartReceipt>> {
        let (blocks, full_key, key) = (self.blocks.clone(), self.full_key.clone(), self.key.clone());
        let id = client::block_id(&self.upload_id, index);
        Box::pin(async move {
            let size = data.len() as u64;
            blocks.put_block(&full_key, &key, &id, data).await?;
            Ok(PartReceipt { index, id, size, crc32c })
        })
    }

    async fn complete(self: Box<Self>, parts: Vec<PartReceipt>) -> Result<PutReceipt> {
        self.blocks.put_block_list(&self.full_key, &self.key, &self.upload_id, &parts, &self.attrs).await
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        // Uncommitted blocks are garbage-collected by Azure after a week; nothing to delete.
        Ok(())
    }
}
