//! Listing a page of up to 1000 objects at a time, in name order.

use crate::Result;
use ferry_core::ObjectEntry;
use futures::StreamExt;
use futures::stream::BoxStream;

use super::multipart::part_object;
use super::*;

impl GcsProvider {
    /// [`Provider::list`]: every object under the prefix; ferry's part objects as skipped entries.
    pub(super) fn listing(&self) -> BoxStream<'_, Result<Vec<ObjectEntry>>> {
        let prefix = self.location.prefix.as_str();
        futures::stream::unfold(Some(None::<String>), move |state| async move {
            let token = state?;
            match self.client.list_page(prefix, token.as_deref()).await {
                Ok(p) => {
                    let entries = p
                        .items
                        .into_iter()
                        .filter_map(|o| {
                            let key = o.name.get(prefix.len()..)?.to_string();
                            // ferry's own part objects are recorded as skipped, never copied;
                            // a user's look-alike name is an ordinary object.
                            Some(match part_object(&o.name) {
                                Some(_) => ObjectEntry::skipped(key, ferry_core::SkipReason::FerryTempFile),
                                None => o.entry(key),
                            })
                        })
                        .collect();
                    Some((Ok(entries), p.next_page_token.map(Some)))
                }
                Err(e) => Some((Err(e), None)),
            }
        })
        .boxed()
    }
}
