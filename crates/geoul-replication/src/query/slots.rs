//! A set of slots as a bitmap (512 bytes for 4096 slots).

use geoul_placement::{Slot, SLOT_COUNT};
use serde::{Deserialize, Serialize};

const WORDS: usize = SLOT_COUNT as usize / 64;

/// A set of slots.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotSet(Vec<u64>);

impl SlotSet {
    /// No slot.
    pub fn empty() -> Self {
        Self(vec![0; WORDS])
    }

    /// Slots `0..n`.
    pub fn full(n: u16) -> Self {
        let mut s = Self::empty();
        for i in 0..n.min(SLOT_COUNT) {
            s.insert(i);
        }
        s
    }

    /// Adds a slot.
    pub fn insert(&mut self, slot: u16) {
        if let Some(w) = self.0.get_mut(usize::from(slot) / 64) {
            *w |= 1 << (slot % 64);
        }
    }

    /// Whether `slot` is in the set (a malformed, short set holds nothing).
    pub fn contains(&self, slot: Slot) -> bool {
        let i = slot.get();
        self.0
            .get(usize::from(i) / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Slots in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..SLOT_COUNT).filter(|i| {
            self.0
                .get(usize::from(*i) / 64)
                .is_some_and(|w| w & (1 << (i % 64)) != 0)
        })
    }

    /// Slots in the set.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// Slots in `self` and not in `other`.
    pub fn minus(&self, other: &SlotSet) -> SlotSet {
        SlotSet(
            self.0
                .iter()
                .enumerate()
                .map(|(i, w)| w & !other.0.get(i).copied().unwrap_or(0))
                .collect(),
        )
    }

    /// Slots in both.
    pub fn and(&self, other: &SlotSet) -> SlotSet {
        SlotSet(
            self.0
                .iter()
                .enumerate()
                .map(|(i, w)| w & other.0.get(i).copied().unwrap_or(0))
                .collect(),
        )
    }

    /// Adds every slot of `other`.
    pub fn union_with(&mut self, other: &SlotSet) {
        for (i, w) in self.0.iter_mut().enumerate() {
            *w |= other.0.get(i).copied().unwrap_or(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let mut a = SlotSet::empty();
        a.insert(0);
        a.insert(64);
        a.insert(4095);
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![0, 64, 4095]);
        let mut b = SlotSet::empty();
        b.insert(64);
        assert_eq!(a.minus(&b).iter().collect::<Vec<_>>(), vec![0, 4095]);
        assert_eq!(a.and(&b).iter().collect::<Vec<_>>(), vec![64]);
        b.union_with(&a);
        assert_eq!(b.len(), 3);
        assert_eq!(SlotSet::full(SLOT_COUNT).len(), 4096);
        // A short set from the network holds nothing beyond its words.
        let short = SlotSet(vec![1]);
        assert!(!short.contains(Slot::new(100).expect("slot")));
    }
}
