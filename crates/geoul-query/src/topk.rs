//! Keeping the best rows on a replica, and merging replicas' pages.
//!
//! Owns: [`TopK`] (a replica's bounded selection of its best rows after a cursor)
//! and [`merge_pages`] (the coordinator's k-way merge of those pages).
//! Does not own: the order ([`crate::compare`]), filtering (the executor applies
//! [`crate::Expr::matches`] before offering rows) or choosing replicas.

use std::cmp::Ordering;
use std::collections::HashSet;

use crate::ast::{OrderKey, LIMIT_MAX};
use crate::heap::Heap;
use crate::order::{compare, Cursor, CursorError, SortKey};

/// The best `limit` rows offered so far that sort strictly after a cursor. Costs
/// O(log limit) per offered row and holds at most `limit` rows.
pub struct TopK<T> {
    order: Vec<OrderKey>,
    limit: usize,
    after: Option<Cursor>,
    /// The worst kept row on top, so a better newcomer replaces it in one sift.
    heap: Heap<(SortKey, T)>,
}

impl<T> TopK<T> {
    /// Keeps the first `limit` rows under `order` after `after`. Fails if the
    /// cursor does not fit the order (or breaks a cursor bound).
    pub fn new(
        order: &[OrderKey],
        limit: usize,
        after: Option<&Cursor>,
    ) -> Result<Self, CursorError> {
        if let Some(cursor) = after {
            cursor.check(order)?;
        }
        Ok(Self {
            order: order.to_vec(),
            limit,
            after: after.cloned(),
            // Preallocate no more than a valid query can ask for.
            heap: Heap::with_capacity(limit.min(LIMIT_MAX as usize)),
        })
    }

    /// Considers one row: ignored if it is not after the cursor, kept if it is
    /// among the best `limit` so far.
    pub fn offer(&mut self, sort_key: SortKey, item: T) {
        if self.limit == 0 {
            return;
        }
        if let Some(cursor) = &self.after {
            if !cursor.admits(&self.order, &sort_key) {
                return;
            }
        }
        let order = &self.order;
        let worse_on_top =
            |a: &(SortKey, T), b: &(SortKey, T)| compare(order, &a.0, &b.0) == Ordering::Greater;
        if self.heap.len() < self.limit {
            self.heap.push((sort_key, item), &worse_on_top);
            return;
        }
        let better_than_worst = self
            .heap
            .peek()
            .is_some_and(|worst| compare(order, &sort_key, &worst.0) == Ordering::Less);
        if better_than_worst {
            self.heap.replace_top((sort_key, item), &worse_on_top);
        }
    }

    /// Whether [`TopK::offer`] would keep a row with `sort_key` now: lets a
    /// caller skip building an expensive item for a row that cannot place.
    pub fn accepts(&self, sort_key: &SortKey) -> bool {
        if self.limit == 0 {
            return false;
        }
        if let Some(cursor) = &self.after {
            if !cursor.admits(&self.order, sort_key) {
                return false;
            }
        }
        self.heap.len() < self.limit
            || self
                .heap
                .peek()
                .is_some_and(|worst| compare(&self.order, sort_key, &worst.0) == Ordering::Less)
    }

    /// Rows kept so far.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no row is kept.
    pub fn is_empty(&self) -> bool {
        self.heap.len() == 0
    }

    /// The kept rows, best first.
    pub fn into_sorted(self) -> Vec<(SortKey, T)> {
        let mut rows = self.heap.into_vec();
        rows.sort_by(|a, b| compare(&self.order, &a.0, &b.0));
        rows
    }
}

/// Merges pages that are each sorted under `order` into the first `limit` rows.
///
/// A key that appears more than once (replicas overlap) is returned once, as its
/// first occurrence in merge order; rows that compare equal come from the
/// earlier page first. A page that is not sorted (a faulty peer) is sorted here
/// rather than trusted: checking costs O(n), and an unsorted page would
/// otherwise put rows out of order and make the next cursor skip rows.
pub fn merge_pages<T>(
    order: &[OrderKey],
    limit: usize,
    pages: Vec<Vec<(SortKey, T)>>,
) -> Vec<(SortKey, T)> {
    let by_order = |a: &(SortKey, T), b: &(SortKey, T)| compare(order, &a.0, &b.0);
    let mut sources = Vec::with_capacity(pages.len());
    for mut page in pages {
        if !page.is_sorted_by(|a, b| by_order(a, b) != Ordering::Greater) {
            page.sort_by(by_order);
        }
        sources.push(page.into_iter());
    }
    // Heads of every page, best on top; equal rows by page index, so the merge
    // is deterministic.
    let best_on_top = |a: &((SortKey, T), usize), b: &((SortKey, T), usize)| {
        by_order(&a.0, &b.0).then(a.1.cmp(&b.1)) == Ordering::Less
    };
    let mut heads = Heap::with_capacity(sources.len());
    for (page, source) in sources.iter_mut().enumerate() {
        if let Some(row) = source.next() {
            heads.push((row, page), &best_on_top);
        }
    }
    let mut out = Vec::with_capacity(limit.min(LIMIT_MAX as usize));
    // Keys returned so far: at most `limit` of them.
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    while out.len() < limit {
        let Some((row, page)) = heads.pop(&best_on_top) else {
            break;
        };
        if let Some(next) = sources.get_mut(page).and_then(Iterator::next) {
            heads.push((next, page), &best_on_top);
        }
        if seen.insert(row.0.key.clone()) {
            out.push(row);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use geoul_store::Value;

    fn row(v: i64, key: &str) -> SortKey {
        SortKey {
            values: vec![Some(Value::Int(v))],
            key: key.as_bytes().to_vec(),
        }
    }

    #[test]
    fn accepts_says_whether_an_offer_would_place() {
        let order = [OrderKey::desc("v")];
        let mut top: TopK<()> = TopK::new(&order, 2, None).expect("topk");
        assert!(top.accepts(&row(1, "a")));
        top.offer(row(5, "a"), ());
        top.offer(row(3, "b"), ());
        // Full: only rows better than the worst kept (3) place.
        assert!(top.accepts(&row(4, "c")));
        assert!(!top.accepts(&row(2, "c")));
        assert!(!top.accepts(&row(3, "c")), "ties break by key: c after b");
        let cursor = row(4, "z").to_cursor();
        let after: TopK<()> = TopK::new(&order, 2, Some(&cursor)).expect("topk");
        assert!(!after.accepts(&row(5, "a")), "before the cursor");
        assert!(after.accepts(&row(3, "a")));
    }

    fn keys<T>(rows: &[(SortKey, T)]) -> Vec<String> {
        rows.iter()
            .map(|(k, _)| String::from_utf8_lossy(&k.key).into_owned())
            .collect()
    }

    #[test]
    fn keeps_the_best_after_the_cursor() {
        let order = [OrderKey::desc("score")];
        let cursor = row(8, "c").to_cursor();
        let mut top = TopK::new(&order, 2, Some(&cursor)).expect("fits");
        for (v, k) in [(9, "a"), (8, "b"), (8, "d"), (3, "e"), (7, "f"), (1, "g")] {
            top.offer(row(v, k), ());
        }
        assert_eq!(top.len(), 2);
        assert_eq!(keys(&top.into_sorted()), ["d", "f"]);
    }

    #[test]
    fn zero_limit_keeps_nothing_and_bad_cursors_are_refused() {
        let order = [OrderKey::asc("score")];
        let mut top = TopK::new(&order, 0, None).expect("no cursor");
        top.offer(row(1, "a"), ());
        assert!(top.is_empty());
        let cursor = Cursor {
            values: vec![],
            key: b"a".to_vec(),
        };
        assert!(matches!(
            TopK::<()>::new(&order, 5, Some(&cursor)),
            Err(CursorError::WrongArity { .. })
        ));
    }

    #[test]
    fn merges_dedups_and_stops_at_limit() {
        let order = [OrderKey::asc("score")];
        let pages = vec![
            vec![(row(1, "a"), 0), (row(4, "d"), 0)],
            vec![(row(1, "a"), 1), (row(2, "b"), 1), (row(5, "e"), 1)],
            vec![],
            // Unsorted: a faulty peer.
            vec![(row(3, "c"), 3), (row(0, "z"), 3)],
        ];
        let merged = merge_pages(&order, 4, pages);
        assert_eq!(keys(&merged), ["z", "a", "b", "c"]);
        assert_eq!(merged[1].1, 0, "the first page's copy of a duplicate wins");
    }
}

/// Properties against the plain definition: sort everything with `compare`,
/// drop rows not after the cursor, take `limit`.
#[cfg(test)]
mod properties {
    use super::*;
    use crate::testgen::{narrow_doc, narrow_order, narrow_value, rows};
    use geoul_store::Value;
    use proptest::prelude::*;

    fn oracle(
        order: &[OrderKey],
        rows: &[SortKey],
        limit: usize,
        after: Option<&Cursor>,
    ) -> Vec<Vec<u8>> {
        let mut kept: Vec<&SortKey> = rows
            .iter()
            .filter(|r| after.is_none_or(|c| c.admits(order, r)))
            .collect();
        kept.sort_by(|a, b| compare(order, a, b));
        kept.into_iter()
            .take(limit)
            .map(|r| r.key.clone())
            .collect()
    }

    fn keys(page: &[(SortKey, usize)]) -> Vec<Vec<u8>> {
        page.iter().map(|(k, _)| k.key.clone()).collect()
    }

    /// A cursor: at a real row, or made up (values and key may equal a row's).
    type CursorPick = Option<(bool, prop::sample::Index, Vec<Option<Value>>, u8)>;

    fn cursor_pick() -> impl Strategy<Value = CursorPick> {
        prop::option::of((
            any::<bool>(),
            any::<prop::sample::Index>(),
            prop::collection::vec(prop::option::of(narrow_value()), 3),
            0u8..40,
        ))
    }

    fn make_cursor(order: &[OrderKey], rows: &[SortKey], pick: CursorPick) -> Option<Cursor> {
        let (at_row, index, mut values, key) = pick?;
        if at_row && !rows.is_empty() {
            return Some(rows[index.index(rows.len())].to_cursor());
        }
        values.truncate(order.len());
        Some(Cursor {
            values,
            key: format!("k{key:04}").into_bytes(),
        })
    }

    /// Replicas: every row goes to a non-empty set of `replicas` pages (overlap
    /// as replication gives), each page a replica's top-k.
    fn replica_pages(
        order: &[OrderKey],
        rows: &[SortKey],
        placement: &[u8],
        replicas: usize,
        limit: usize,
        after: Option<&Cursor>,
    ) -> Vec<Vec<(SortKey, usize)>> {
        (0..replicas)
            .map(|r| {
                let mut top = TopK::new(order, limit, after).expect("cursor fits");
                for (i, row) in rows.iter().enumerate() {
                    let mask = placement[i] % ((1 << replicas) - 1) + 1;
                    if mask & (1 << r) != 0 {
                        top.offer(row.clone(), i);
                    }
                }
                top.into_sorted()
            })
            .collect()
    }

    proptest! {
        #[test]
        fn topk_equals_sort_filter_take(
            docs in prop::collection::vec(narrow_doc(), 0..40),
            order in narrow_order(),
            limit in 0usize..12,
            pick in cursor_pick(),
        ) {
            let rows = rows(&order, &docs);
            let cursor = make_cursor(&order, &rows, pick);
            let mut top = TopK::new(&order, limit, cursor.as_ref()).expect("cursor fits");
            for (i, row) in rows.iter().enumerate() {
                top.offer(row.clone(), i);
            }
            prop_assert_eq!(keys(&top.into_sorted()), oracle(&order, &rows, limit, cursor.as_ref()));
        }

        #[test]
        fn merged_replica_pages_equal_sort_filter_take(
            docs in prop::collection::vec(narrow_doc(), 0..40),
            placement in prop::collection::vec(any::<u8>(), 40),
            replicas in 1usize..4,
            order in narrow_order(),
            limit in 0usize..12,
            pick in cursor_pick(),
        ) {
            let rows = rows(&order, &docs);
            let cursor = make_cursor(&order, &rows, pick);
            let pages = replica_pages(&order, &rows, &placement, replicas, limit, cursor.as_ref());
            let merged = merge_pages(&order, limit, pages);
            prop_assert_eq!(keys(&merged), oracle(&order, &rows, limit, cursor.as_ref()));
        }

        #[test]
        fn paging_with_cursors_visits_every_row_once_in_order(
            docs in prop::collection::vec(narrow_doc(), 0..40),
            placement in prop::collection::vec(any::<u8>(), 40),
            replicas in 1usize..4,
            order in narrow_order(),
            page_size in 1usize..6,
        ) {
            let rows = rows(&order, &docs);
            let mut visited = Vec::new();
            let mut cursor: Option<Cursor> = None;
            // Each page but the last is full, so this many pages always suffice.
            for _ in 0..=rows.len() / page_size + 1 {
                let pages =
                    replica_pages(&order, &rows, &placement, replicas, page_size, cursor.as_ref());
                let page = merge_pages(&order, page_size, pages);
                visited.extend(keys(&page));
                // Through the text form, as a client would send it back.
                cursor = match page.last() {
                    Some((last, _)) => {
                        let text = last.to_cursor().encode().expect("small cursor");
                        Some(Cursor::decode(&text).expect("decodes"))
                    }
                    None => None,
                };
                if page.len() < page_size {
                    break;
                }
            }
            prop_assert_eq!(visited, oracle(&order, &rows, usize::MAX, None));
        }
    }
}
