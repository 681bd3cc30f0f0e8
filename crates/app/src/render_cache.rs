//! The rendered-frame cache: a bounded in-memory LRU of encoded images, by total bytes, keyed by
//! SOP Instance UID and every render option. Instances are never overwritten (a SOP Instance UID
//! keeps its bytes), so an entry never goes stale. The cache holds no access decisions: callers
//! check scope and write the audit event on a hit as on a miss.

use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use hashlink::LinkedHashMap;
use yilian_domain::SopInstanceUid;
use yilian_render::RenderOptions;

/// Default size: 64 MiB of encoded images (a few thousand thumbnails, a few hundred full frames).
pub const DEFAULT_RENDER_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Bookkeeping counted per entry beside the image bytes (key, links).
const ENTRY_OVERHEAD: u64 = 160;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RenderKey {
    pub sop_instance_uid: SopInstanceUid,
    pub options: RenderOptions,
}

/// What the cache holds now, and how it has been used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenderCacheStats {
    pub entries: usize,
    pub bytes: u64,
    pub capacity: u64,
    pub hits: u64,
    pub misses: u64,
}

#[derive(Default)]
struct Inner {
    /// Least recently used at the front.
    map: LinkedHashMap<RenderKey, Bytes>,
    bytes: u64,
    hits: u64,
    misses: u64,
}

pub struct RenderCache {
    capacity: u64,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for RenderCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderCache")
            .field("stats", &self.stats())
            .finish()
    }
}

fn weight(key: &RenderKey, image: &Bytes) -> u64 {
    image.len() as u64 + key.sop_instance_uid.as_str().len() as u64 + ENTRY_OVERHEAD
}

impl RenderCache {
    /// A cache holding at most `capacity_bytes`; 0 disables caching.
    pub fn new(capacity_bytes: u64) -> Self {
        RenderCache {
            capacity: capacity_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The map is consistent between statements; a panic elsewhere cannot leave it half-updated.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached image, marking it most recently used.
    pub fn get(&self, key: &RenderKey) -> Option<Bytes> {
        let mut inner = self.lock();
        let found = inner.map.to_back(key).cloned();
        match found {
            Some(_) => inner.hits += 1,
            None => inner.misses += 1,
        }
        found
    }

    /// Stores an image, evicting least recently used entries to stay within the capacity. An image
    /// larger than the whole cache is not kept.
    pub fn insert(&self, key: RenderKey, image: Bytes) {
        let w = weight(&key, &image);
        if w > self.capacity {
            return;
        }
        let mut inner = self.lock();
        if let Some(old) = inner.map.remove(&key) {
            inner.bytes -= weight(&key, &old);
        }
        while inner.bytes + w > self.capacity {
            match inner.map.pop_front() {
                Some((k, v)) => inner.bytes -= weight(&k, &v),
                None => break,
            }
        }
        inner.bytes += w;
        inner.map.insert(key, image);
    }

    pub fn stats(&self) -> RenderCacheStats {
        let inner = self.lock();
        RenderCacheStats {
            entries: inner.map.len(),
            bytes: inner.bytes,
            capacity: self.capacity,
            hits: inner.hits,
            misses: inner.misses,
        }
    }
}

impl Default for RenderCache {
    fn default() -> Self {
        RenderCache::new(DEFAULT_RENDER_CACHE_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sop: &str, frame: u32) -> RenderKey {
        RenderKey {
            sop_instance_uid: SopInstanceUid::new(sop).unwrap(),
            options: RenderOptions {
                frame,
                ..Default::default()
            },
        }
    }

    fn image(n: usize) -> Bytes {
        Bytes::from(vec![7u8; n])
    }

    #[test]
    fn hits_return_the_stored_bytes_and_options_are_part_of_the_key() {
        let c = RenderCache::new(1 << 20);
        c.insert(key("1.2.3", 0), image(100));
        assert_eq!(c.get(&key("1.2.3", 0)), Some(image(100)));
        assert_eq!(c.get(&key("1.2.3", 1)), None);
        assert_eq!(c.get(&key("1.2.4", 0)), None);
        let mut jpeg = key("1.2.3", 0);
        jpeg.options.format = yilian_render::OutputFormat::Jpeg;
        assert_eq!(c.get(&jpeg), None);
        let s = c.stats();
        assert_eq!((s.entries, s.hits, s.misses), (1, 1, 3));
    }

    #[test]
    fn the_least_recently_used_entry_goes_first_and_bytes_stay_bounded() {
        let one = 1000 + ENTRY_OVERHEAD + 5;
        let c = RenderCache::new(3 * one);
        for f in 0..3 {
            c.insert(key("1.2.3", f), image(1000));
        }
        // Touch frame 0, so frame 1 is now the oldest.
        assert!(c.get(&key("1.2.3", 0)).is_some());
        c.insert(key("1.2.3", 3), image(1000));
        assert!(c.get(&key("1.2.3", 1)).is_none());
        for f in [0, 2, 3] {
            assert!(c.get(&key("1.2.3", f)).is_some(), "frame {f}");
        }
        assert_eq!(c.stats().bytes, 3 * one);
        // A big image pushes out as many as needed.
        c.insert(key("1.2.3", 9), image(2500));
        let s = c.stats();
        assert!(s.bytes <= s.capacity);
        assert_eq!(s.entries, 1);
    }

    #[test]
    fn oversized_images_and_a_zero_capacity_cache_keep_nothing() {
        let c = RenderCache::new(500);
        c.insert(key("1.2.3", 0), image(1000));
        assert_eq!(c.stats().entries, 0);
        let off = RenderCache::new(0);
        off.insert(key("1.2.3", 0), image(1));
        assert!(off.get(&key("1.2.3", 0)).is_none());
    }

    #[test]
    fn replacing_an_entry_does_not_count_it_twice() {
        let c = RenderCache::new(1 << 20);
        c.insert(key("1.2.3", 0), image(100));
        c.insert(key("1.2.3", 0), image(300));
        let s = c.stats();
        assert_eq!(s.entries, 1);
        assert_eq!(s.bytes, 300 + 5 + ENTRY_OVERHEAD);
    }
}
