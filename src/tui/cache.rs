//! A cache with a size budget that forgets the least recently used entries first; the explorer
//! keeps finished views and CAM sessions in such caches, so hours of browsing stay within a
//! fixed amount of memory.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

pub struct Bounded<K, V> {
    entries: HashMap<K, (V, usize)>,
    /// Keys from least to most recently used.
    order: VecDeque<K>,
    used: usize,
    budget: usize,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    /// A cache whose entries' sizes add up to at most `budget` (in whatever unit `insert` is
    /// given); the newest entry is kept even when it alone is larger.
    pub fn new(budget: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            used: 0,
            budget,
        }
    }

    pub fn get(&mut self, key: &K) -> Option<&mut V> {
        if self.entries.contains_key(key) {
            self.touch(key);
        }
        self.entries.get_mut(key).map(|(v, _)| v)
    }

    pub fn insert(&mut self, key: K, value: V, size: usize) -> &mut V {
        if let Some((_, old)) = self.entries.remove(&key) {
            self.used -= old;
            self.order.retain(|k| k != &key);
        }
        while self.used + size > self.budget {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some((_, s)) = self.entries.remove(&oldest) {
                self.used -= s;
            }
        }
        self.used += size;
        self.order.push_back(key.clone());
        &mut self.entries.entry(key).or_insert((value, size)).0
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
        self.used = 0;
    }

    fn touch(&mut self, key: &K) {
        if let Some(i) = self.order.iter().position(|k| k == key) {
            let k = self.order.remove(i).expect("index in range");
            self.order.push_back(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Bounded;

    #[test]
    fn forgets_the_least_recently_used_first() {
        let mut c = Bounded::new(10);
        c.insert("a", 1, 4);
        c.insert("b", 2, 4);
        assert_eq!(c.get(&"a").copied(), Some(1));
        c.insert("c", 3, 4);
        assert!(c.get(&"b").is_none(), "b was the least recently used");
        assert_eq!(c.get(&"a").copied(), Some(1));
        assert_eq!(c.get(&"c").copied(), Some(3));
        c.insert("big", 4, 50);
        assert_eq!(c.get(&"big").copied(), Some(4));
        assert!(c.get(&"a").is_none() && c.get(&"c").is_none());
    }
}
