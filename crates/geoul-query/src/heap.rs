//! A binary heap ordered by a comparator passed to each call.
//!
//! Owns: the heap mechanics for [`crate::TopK`] and [`crate::merge_pages`].
//! Does not own: any order (callers pass it).
//!
//! Why not `std::collections::BinaryHeap`: the order depends on the query's
//! order keys, known only at run time, and `BinaryHeap` needs `Ord` on its
//! elements, which would force every element to carry a reference to the order.

/// A binary heap whose top is the element `above` ranks first.
pub(crate) struct Heap<T> {
    items: Vec<T>,
}

impl<T> Heap<T> {
    /// An empty heap with room for `capacity` elements.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            items: Vec::with_capacity(capacity),
        }
    }

    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// The top element.
    pub(crate) fn peek(&self) -> Option<&T> {
        self.items.first()
    }

    /// Adds `item`; `above(a, b)` says `a` belongs nearer the top than `b`.
    pub(crate) fn push(&mut self, item: T, above: &impl Fn(&T, &T) -> bool) {
        self.items.push(item);
        self.sift_up(self.items.len() - 1, above);
    }

    /// Removes and returns the top element.
    pub(crate) fn pop(&mut self, above: &impl Fn(&T, &T) -> bool) -> Option<T> {
        if self.items.is_empty() {
            return None;
        }
        let top = self.items.swap_remove(0);
        self.sift_down(0, above);
        Some(top)
    }

    /// Replaces the top element with `item` (one sift instead of pop + push).
    pub(crate) fn replace_top(&mut self, item: T, above: &impl Fn(&T, &T) -> bool) {
        match self.items.first_mut() {
            Some(top) => {
                *top = item;
                self.sift_down(0, above);
            }
            None => self.items.push(item),
        }
    }

    /// The elements, in no particular order.
    pub(crate) fn into_vec(self) -> Vec<T> {
        self.items
    }

    fn sift_up(&mut self, mut i: usize, above: &impl Fn(&T, &T) -> bool) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if !above(&self.items[i], &self.items[parent]) {
                break;
            }
            self.items.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize, above: &impl Fn(&T, &T) -> bool) {
        let n = self.items.len();
        loop {
            let mut best = i;
            for child in [2 * i + 1, 2 * i + 2] {
                if child < n && above(&self.items[child], &self.items[best]) {
                    best = child;
                }
            }
            if best == i {
                return;
            }
            self.items.swap(i, best);
            i = best;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pops_in_order(items in proptest::collection::vec(any::<i32>(), 0..100)) {
            let above = |a: &i32, b: &i32| a < b;
            let mut heap = Heap::with_capacity(0);
            for &i in &items {
                heap.push(i, &above);
            }
            let mut popped = Vec::new();
            while let Some(i) = heap.pop(&above) {
                popped.push(i);
            }
            let mut sorted = items.clone();
            sorted.sort();
            prop_assert_eq!(popped, sorted);
        }
    }

    #[test]
    fn replace_top_keeps_the_heap_ordered() {
        let above = |a: &i32, b: &i32| a > b;
        let mut heap = Heap::with_capacity(3);
        heap.replace_top(1, &above);
        for i in [5, 3] {
            heap.push(i, &above);
        }
        heap.replace_top(2, &above);
        assert_eq!(heap.peek(), Some(&3));
        assert_eq!(heap.len(), 3);
    }
}
