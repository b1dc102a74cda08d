//! [`TaskSet`]: a set of task numbers as a bitmap (one bit per number up to the
//! largest, so a million tasks take 125 KiB): what a resume and a windowed run keep of
//! the tasks that finished, instead of a tree of numbers.

/// A set of task numbers (`u32`), one bit each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskSet {
    words: Vec<u64>,
    len: usize,
}

impl TaskSet {
    /// Adds `n`; returns whether it was new.
    pub fn insert(&mut self, n: u32) -> bool {
        let (w, bit) = ((n / 64) as usize, 1u64 << (n % 64));
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        let new = self.words[w] & bit == 0;
        self.words[w] |= bit;
        self.len += usize::from(new);
        new
    }

    /// Removes `n`; returns whether it was there.
    pub fn remove(&mut self, n: u32) -> bool {
        let (w, bit) = ((n / 64) as usize, 1u64 << (n % 64));
        let Some(word) = self.words.get_mut(w) else {
            return false;
        };
        let was = *word & bit != 0;
        *word &= !bit;
        self.len -= usize::from(was);
        was
    }

    /// Whether `n` is in the set.
    pub fn contains(&self, n: u32) -> bool {
        self.words
            .get((n / 64) as usize)
            .is_some_and(|w| w & (1u64 << (n % 64)) != 0)
    }

    /// How many numbers the set holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set holds no number.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The numbers, increasing.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                (w != 0).then(|| {
                    let b = w.trailing_zeros();
                    w &= w - 1;
                    i as u32 * 64 + b
                })
            })
        })
    }
}

impl FromIterator<u32> for TaskSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut s = Self::default();
        for n in iter {
            s.insert(n);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_removes_and_iterates_in_order() {
        let mut s = TaskSet::default();
        assert_eq!(s.len(), 0);
        for n in [5, 64, 0, 1_000_000, 63, 5] {
            s.insert(n);
        }
        assert_eq!(s.len(), 5);
        assert!(s.contains(64) && s.contains(0) && !s.contains(65));
        assert!(!s.contains(2_000_000));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 5, 63, 64, 1_000_000]);
        assert!(s.remove(64));
        assert!(!s.remove(64));
        assert!(!s.remove(5_000_000));
        assert_eq!(s.len(), 4);
        assert_eq!(
            [3u32, 1, 3]
                .into_iter()
                .collect::<TaskSet>()
                .iter()
                .collect::<Vec<_>>(),
            vec![1, 3]
        );
    }
}
