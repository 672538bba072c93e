//! Byte ranges of a volume: sorted, disjoint, non-empty lists.

use std::ops::Range;

use ember_ceph::{DiffExtent, DiffOptions, Image};

use crate::RbdBackupError;

/// `ranges` sorted, without empty ones, and with overlapping or touching
/// ones merged.
pub(crate) fn normalize(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    merged
}

/// What of `from` is not in `remove` (both normalized); normalized.
pub(crate) fn subtract(from: &[Range<u64>], remove: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    let mut cut = remove.iter().peekable();
    for range in from {
        let mut start = range.start;
        // Skip what ends before this range; what remains may overlap it.
        while cut.next_if(|c| c.end <= start).is_some() {}
        let mut iter = cut.clone();
        while let Some(c) = iter.next_if(|c| c.start < range.end) {
            if c.start > start {
                out.push(start..c.start);
            }
            start = start.max(c.end);
        }
        if start < range.end {
            out.push(start..range.end);
        }
    }
    out
}

/// `ranges` (normalized) cut at `end`.
pub(crate) fn clip(ranges: Vec<Range<u64>>, end: u64) -> Vec<Range<u64>> {
    ranges
        .into_iter()
        .filter(|r| r.start < end)
        .map(|r| r.start..r.end.min(end))
        .collect()
}

/// How many bytes `ranges` cover (disjoint).
pub(crate) fn total(ranges: &[Range<u64>]) -> u64 {
    ranges.iter().map(|r| r.end - r.start).sum()
}

/// Extents holding data, and extents now reading as zeros.
pub(crate) type Changed = (Vec<Range<u64>>, Vec<Range<u64>>);

/// What changed in `image` (at the version it is opened at) since
/// `from_snap` (or since it was empty): the extents holding data, and those
/// now reading as zeros. A clone's parent data counts as its own, as
/// `rbd export-diff` has it.
pub(crate) fn changed_extents(
    image: &Image,
    from_snap: Option<&str>,
) -> Result<Changed, RbdBackupError> {
    let opts = DiffOptions {
        include_parent: true,
        whole_object: false,
    };
    let (data, zero): (Vec<_>, Vec<_>) = image
        .diff(from_snap, opts)?
        .into_iter()
        .partition(|e| e.exists);
    let ranges = |extents: Vec<DiffExtent>| {
        normalize(
            extents
                .into_iter()
                .map(|e| e.offset..e.offset + e.len)
                .collect(),
        )
    };
    let data = ranges(data);
    let zero = subtract(&ranges(zero), &data);
    Ok((data, zero))
}

/// Where `image` (at its head, parent data included) may hold data, by
/// whole objects: what must be zeroed where the data written over it has
/// holes.
pub(crate) fn allocated(image: &Image) -> Result<Vec<Range<u64>>, RbdBackupError> {
    let opts = DiffOptions {
        include_parent: true,
        whole_object: true,
    };
    Ok(normalize(
        image
            .diff(None, opts)?
            .into_iter()
            .filter(|e| e.exists)
            .map(|e| e.offset..e.offset + e.len)
            .collect(),
    ))
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)] // one-range lists are the point
mod tests {
    use super::*;

    #[test]
    fn normalize_sorts_merges_and_drops_empty() {
        assert_eq!(
            normalize(vec![10..20, 0..5, 5..7, 15..30, 40..40, 35..36]),
            vec![0..7, 10..30, 35..36]
        );
        assert!(normalize(vec![]).is_empty());
    }

    #[test]
    fn subtract_leaves_the_gaps() {
        assert_eq!(
            subtract(&[0..100], &[10..20, 30..40]),
            vec![0..10, 20..30, 40..100]
        );
        assert_eq!(subtract(&[0..10, 20..30], &[5..25]), vec![0..5, 25..30]);
        assert_eq!(subtract(&[0..10], &[0..10]), Vec::<Range<u64>>::new());
        assert_eq!(subtract(&[0..10], &[]), vec![0..10]);
        assert_eq!(subtract(&[5..10], &[0..3, 12..20]), vec![5..10]);
        assert_eq!(
            subtract(&[0..10, 12..14, 16..30], &[8..13, 20..22, 25..50]),
            vec![0..8, 13..14, 16..20, 22..25]
        );
    }

    #[test]
    fn clip_and_total() {
        assert_eq!(clip(vec![0..10, 20..30, 40..50], 25), vec![0..10, 20..25]);
        assert_eq!(total(&[0..10, 20..25]), 15);
    }
}
