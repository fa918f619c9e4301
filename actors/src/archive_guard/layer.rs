//! A layer is one byte stream clamd scans as a file of its own: the object, or a member or
//! decompressed stream extracted from another layer. Its type is decided from its first bytes,
//! as clamd decides it (a magic at offset 0; tar by its `ustar` magic or a valid header
//! checksum), and the layer of that type follows what clamd extracts from it.

use super::context::{Context, Extracted, Found, Region};
use super::finding::{ArchiveFinding, FindingKind};
use super::gzip::GzipLayer;
use super::magic::unfollowed_container;
use super::scavenge::Scavenger;
use super::tar::{looks_like_tar, TarLayer};
use super::zip::ZipLayer;
use super::zip_embedded::EmbeddedZips;
use super::zip_headers::LOCAL;

/// How many first bytes decide a layer's type (a tar header).
const SNIFF: usize = 512;

enum Kind {
    /// The first bytes, until they decide the type.
    Sniffing(Vec<u8>),
    Zip(Box<ZipLayer>),
    Gzip(Box<GzipLayer>),
    Tar(Box<TarLayer>),
    /// Any other data: clamd looks for zips embedded in it; the search looks for what clamd
    /// never opens there.
    Other(Box<EmbeddedZips>, Box<Scavenger>),
}

/// Opens the layer of content extracted at `depth` (the guard's [`OpenLayer`](super::context::OpenLayer)).
pub(super) fn open(depth: usize) -> Box<dyn Extracted> {
    Box::new(Layer::new(depth))
}

/// Opens the search of a region clamd extracts nothing from (the guard's
/// [`OpenRegion`](super::context::OpenRegion)).
pub(super) fn open_region(depth: usize, region: Region) -> Box<dyn Extracted> {
    Box::new(Scavenger::new(depth, region))
}

/// One byte stream clamd scans as a file.
pub(super) struct Layer {
    depth: usize,
    kind: Kind,
}

impl Layer {
    /// The object itself (depth 0), or a layer extracted from one.
    pub(super) fn new(depth: usize) -> Layer {
        Layer {
            depth,
            kind: Kind::Sniffing(Vec::new()),
        }
    }

    /// The layer's next bytes.
    pub(super) fn feed(&mut self, bytes: &[u8], context: &mut Context) -> Found {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.depth > 0 {
            context.extract(bytes.len(), self.depth)?;
        }
        if let Kind::Sniffing(head) = &mut self.kind {
            head.extend_from_slice(bytes);
            if head.len() < SNIFF {
                return Ok(());
            }
            let head = std::mem::take(head);
            self.decide(&head)?;
            return self.feed_kind(&head, context);
        }
        self.feed_kind(bytes, context)
    }

    /// The end of the layer.
    pub(super) fn finish(&mut self, context: &mut Context) -> Found {
        if let Kind::Sniffing(head) = &mut self.kind {
            let head = std::mem::take(head);
            self.decide(&head)?;
            self.feed_kind(&head, context)?;
        }
        match &mut self.kind {
            Kind::Sniffing(_) => Ok(()),
            Kind::Zip(zip) => zip.finish(context),
            Kind::Gzip(gzip) => gzip.finish(context),
            Kind::Tar(tar) => tar.finish(context),
            Kind::Other(zips, search) => {
                zips.finish(context)?;
                search.finish(context)
            }
        }
    }

    /// Types the layer by its first bytes, as clamd does.
    fn decide(&mut self, head: &[u8]) -> Found {
        let depth = self.depth;
        self.kind = if head.starts_with(&LOCAL) {
            Kind::Zip(Box::new(ZipLayer::new(depth)))
        } else if head.starts_with(&[0x1f, 0x8b]) {
            Kind::Gzip(Box::new(GzipLayer::new(depth)))
        } else if let Some(container) = unfollowed_container(head) {
            return Err(ArchiveFinding::new(
                FindingKind::UnsupportedContainer,
                depth,
                format!("a {container} container, which the guard does not follow"),
            ));
        } else if looks_like_tar(head) {
            Kind::Tar(Box::new(TarLayer::new(depth)))
        } else {
            Kind::Other(
                Box::new(EmbeddedZips::new(depth)),
                Box::new(Scavenger::new(depth, Region::Inside)),
            )
        };
        Ok(())
    }

    fn feed_kind(&mut self, bytes: &[u8], context: &mut Context) -> Found {
        if bytes.is_empty() {
            return Ok(());
        }
        match &mut self.kind {
            Kind::Sniffing(head) => {
                head.extend_from_slice(bytes);
                Ok(())
            }
            Kind::Zip(zip) => zip.feed(bytes, context),
            Kind::Gzip(gzip) => gzip.feed(bytes, context),
            Kind::Tar(tar) => tar.feed(bytes, context),
            Kind::Other(zips, search) => {
                zips.feed(bytes, context)?;
                search.feed(bytes, context)
            }
        }
    }
}

impl Extracted for Layer {
    fn feed(&mut self, bytes: &[u8], context: &mut Context) -> Found {
        Layer::feed(self, bytes, context)
    }

    fn finish(&mut self, context: &mut Context) -> Found {
        Layer::finish(self, context)
    }
}
