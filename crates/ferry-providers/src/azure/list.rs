//! Listing through object_store, a page of 1000 at a time.

use super::client::entry_from;
use super::*;
use crate::{ProviderError, Result};
use ferry_core::ObjectEntry;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{Attributes, ObjectStore};

impl AzureProvider {
    /// [`Provider::list`]: every blob under the prefix, keys relative to it.
    pub(super) fn listing(&self) -> BoxStream<'_, Result<Vec<ObjectEntry>>> {
        // Path::parse keeps the prefix as given (Path::from would percent-encode `%` or `#`).
        let prefix = match Path::parse(self.location.prefix.trim_end_matches('/')) {
            Ok(p) => (!self.location.prefix.is_empty()).then_some(p),
            Err(e) => {
                let err = ProviderError::BadKey { provider: PROVIDER, key: self.location.prefix.clone(), reason: e.to_string() };
                return futures::stream::once(async move { Err(err) }).boxed();
            }
        };
        let strip = self.location.prefix.len();
        self.store
            .list(prefix.as_ref())
            .map_err(|e| self.error("list", "", e))
            .map_ok(move |m| {
                let key = m.location.as_ref().get(strip..).unwrap_or_default().to_string();
                entry_from(&key, &m, &Attributes::new())
            })
            .try_chunks(1000)
            .map_err(|e| e.1)
            .boxed()
    }
}
