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
                    ..Default::default()
                })
            })
            .collect()
    }

    /// The top level of the location, listed with delimiter `/`, as segments in key order; `None`
    /// when there is nothing to split (fewer than two prefixes) or too much at the top level.
    pub(super) async fn top_level(&self) -> Result<Option<Vec<Segment>>> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.location.bucket)
            .prefix(&self.location.prefix)
            .delimiter("/")
            .into_paginator()
            .send();
        let mut segments = Vec::new();
        for _ in 0..TOP_LEVEL_PAGES {
            self.run.take_slot().await;
            let Some(page) = pages.next().await else { break };
            let page = page.map_err(|e| self.error("list", &self.location.prefix, e))?;
            segments.extend(self.entries(&page).into_iter().map(|e| Segment::Objects(vec![e])));
            segments.extend(page.common_prefixes().iter().filter_map(|p| p.prefix()).map(|p| Segment::Prefix(p.to_string())));
            // The last page: asking the paginator again would send nothing, and take a slot.
            if !has_more(&page) {
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
        let pages = self.client.list_objects_v2().bucket(&self.location.bucket).prefix(&prefix).into_paginator().send();
        // `None` once the last page is in: the paginator would send nothing more, and a slot
        // taken for that poll would charge a request never sent.
        futures::stream::unfold(Some(pages), move |pages| async move {
            let mut pages = pages?;
            self.run.take_slot().await;
            let page = pages.next().await?;
            let more = page.as_ref().is_ok_and(has_more);
            Some((page.map_err(|e| self.error("list", &self.location.prefix, e)).map(|page| self.entries(&page)), more.then_some(pages)))
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

/// Whether a listing has pages after `page` (the paginator asks again only with a continuation
/// token).
fn has_more(page: &aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output) -> bool {
    page.next_continuation_token().is_some_and(|t| !t.is_empty())
}
