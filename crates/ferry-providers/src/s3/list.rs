//! Listing: a deep bucket's top-level prefixes listed in parallel, read back in key order.

use super::client::*;
use super::*;
use crate::{Result, unquote};
use ferry_core::ObjectEntry;
use futures::StreamExt;
use futures::stream::BoxStream;

/// Top-level prefixes listed at once, and pages each may list ahead of the one being read.
const LIST_FANOUT: usize = 16;
const LIST_AHEAD_PAGES: usize = 8;
/// A delimited listing of the top level longer than this many pages means a flat bucket: it is
/// listed plainly instead.
const TOP_LEVEL_PAGES: usize = 4;

/// A run of the listing in key order: top-level objects, or everything under one prefix.
pub(super) enum Segment {
    Objects(Vec<ObjectEntry>),
    Prefix(String),
}

impl Segment {
    /// Where the segment starts, relative to the location's prefix (`prefix_len` bytes).
    fn start(&self, prefix_len: usize) -> &str {
        match self {
            Segment::Objects(v) => v.first().map_or("", |e| e.key.as_str()),
            Segment::Prefix(p) => p.get(prefix_len..).unwrap_or(p),
        }
    }
}

impl S3Provider {
    fn entries(&self, page: &aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output) -> Vec<ObjectEntry> {
        let prefix_len = self.location.prefix.len();
        page.contents()
            .iter()
            .filter_map(|o| {
                let key = o.key()?.get(prefix_len..)?.to_string();
                Some(ObjectEntry {
                    key,
                    size: o.size().unwrap_or(0).max(0) as u64,
                    last_modified: to_chrono(o.last_modified()),
                    etag: o.e_tag().map(unquote),
                    // A listing cannot tell a restored copy: the copy's HEAD does.
                    storage_class: Some(storage_class(o.storage_class().map(|c| c.as_str()), None, None)),
                    ..Default::default()
                })
            })
            .collect()
    }

    /// One page of the listing under `prefix` (with delimiter `/` when `delimited`) after
    /// `token`, through the run's retry layer (a failed page is asked for again, not the
    /// listing restarted).
    async fn page(
        &self,
        prefix: &str,
        delimited: bool,
        token: Option<String>,
    ) -> Result<aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output> {
        request(&self.run, 0, || async {
            let req = self.client.list_objects_v2().bucket(&self.location.bucket).prefix(prefix);
            let req = if delimited { req.delimiter("/") } else { req };
            req.set_continuation_token(token.clone()).send().await.map_err(|e| self.failed("list", &self.location.prefix, e))
        })
        .await
    }

    /// The token of the page after `page`, if there is one.
    fn next_token(page: &aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output) -> Option<String> {
        match page.is_truncated() {
            Some(true) => page.next_continuation_token().map(str::to_string),
            _ => None,
        }
    }

    /// The top level of the location, listed with delimiter `/`, as segments in key order; `None`
    /// when there is nothing to split (fewer than two prefixes) or too much at the top level.
    pub(super) async fn top_level(&self) -> Result<Option<Vec<Segment>>> {
        let mut segments = Vec::new();
        let mut token = None;
        for _ in 0..TOP_LEVEL_PAGES {
            let page = self.page(&self.location.prefix, true, token).await?;
            segments.extend(self.entries(&page).into_iter().map(|e| Segment::Objects(vec![e])));
            segments.extend(page.common_prefixes().iter().filter_map(|p| p.prefix()).map(|p| Segment::Prefix(p.to_string())));
            token = Self::next_token(&page);
            if token.is_none() {
                let prefix_len = self.location.prefix.len();
                segments.sort_by(|a: &Segment, b: &Segment| a.start(prefix_len).cmp(b.start(prefix_len)));
                let prefixes = segments.iter().filter(|s| matches!(s, Segment::Prefix(_))).count();
                return Ok((prefixes >= 2).then_some(segments));
            }
        }
        Ok(None)
    }

    /// Everything under `prefix` (a full key prefix), a page at a time.
    pub(super) fn list_under(&self, prefix: String) -> BoxStream<'_, Result<Vec<ObjectEntry>>> {
        // `None`: the listing is over (the last page was read, or one failed for good).
        futures::stream::unfold(Some(None), move |state: Option<Option<String>>| {
            let prefix = prefix.clone();
            async move {
                let token = state?;
                match self.page(&prefix, false, token).await {
                    Ok(page) => {
                        let next = Self::next_token(&page).map(Some);
                        Some((Ok(self.entries(&page)), next))
                    }
                    Err(e) => Some((Err(e), None)),
                }
            }
        })
        .boxed()
    }

    /// The segments' listings, up to `LIST_FANOUT` under way at once, each at most
    /// `LIST_AHEAD_PAGES` ahead of the reader, read back in key order.
    pub(super) fn list_segments(&self, segments: Vec<Segment>) -> BoxStream<'_, Result<Vec<ObjectEntry>>> {
        futures::stream::iter(segments)
            .map(move |segment| async move {
                let (tx, rx) = tokio::sync::mpsc::channel(LIST_AHEAD_PAGES);
                match segment {
                    Segment::Objects(entries) => {
                        let _ = tx.try_send(Ok(entries));
                    }
                    Segment::Prefix(prefix) => {
                        let lister = S3Provider {
                            location: self.location.clone(),
                            client: self.client.clone(),
                            endpoint: self.endpoint.clone(),
                            connect: self.connect.clone(),
                            run: self.run.clone(),
                        };
                        tokio::spawn(async move {
                            let mut pages = lister.list_under(prefix);
                            while let Some(page) = pages.next().await {
                                // The reader went away (an error elsewhere, or done): stop.
                                if tx.send(page).await.is_err() {
                                    break;
                                }
                            }
                        });
                    }
                }
                // Each page's request took its slot in the lister (or there was none: top-level
                // objects), not here where `Throttled` reads it.
                futures::stream::unfold(rx, move |mut rx| async move {
                    let page = rx.recv().await?;
                    self.run.paid_elsewhere();
                    Some((page, rx))
                })
            })
            .buffered(LIST_FANOUT)
            .flatten()
            .boxed()
    }
}
