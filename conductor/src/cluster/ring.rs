//! A consistent hash ring: node UUIDs to conductor host names. When a conductor joins or
//! leaves, only the nodes of the ring's arcs it gains or loses move (about 1/N of them).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// Points per conductor on the ring: Ironic's default `hash_partition_exponent` of 5 gives 32
/// partitions per conductor, which spreads nodes within a few percent.
pub const POINTS_PER_HOST: u32 = 32;

/// The ring of one set of conductors.
#[derive(Debug, Clone, Default)]
pub struct HashRing {
    points: BTreeMap<u64, String>,
}

fn hash(text: &str) -> u64 {
    let digest = Sha256::digest(text.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

impl HashRing {
    /// The ring over `hosts` (order and repeats do not matter).
    pub fn new<'a>(hosts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut points = BTreeMap::new();
        for host in hosts {
            for i in 0..POINTS_PER_HOST {
                points.insert(hash(&format!("{host}-{i}")), host.to_owned());
            }
        }
        HashRing { points }
    }

    /// The host that owns `key` (a node UUID): the first point at or after its hash, wrapping
    /// round; `None` on an empty ring.
    pub fn owner(&self, key: &str) -> Option<&str> {
        let h = hash(key);
        self.points
            .range(h..)
            .next()
            .or_else(|| self.points.iter().next())
            .map(|(_, host)| host.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("00000000-0000-4000-8000-{i:012}")).collect()
    }

    #[test]
    fn an_empty_ring_owns_nothing() {
        assert_eq!(HashRing::new([]).owner("x"), None);
    }

    #[test]
    fn nodes_spread_over_every_conductor() {
        let ring = HashRing::new(["c1", "c2", "c3"]);
        let nodes = uuids(3000);
        for host in ["c1", "c2", "c3"] {
            let owned = nodes.iter().filter(|n| ring.owner(n) == Some(host)).count();
            assert!((600..=1400).contains(&owned), "{host} owns {owned} of 3000");
        }
    }

    #[test]
    fn a_conductor_leaving_moves_only_its_own_nodes() {
        let before = HashRing::new(["c1", "c2", "c3"]);
        let after = HashRing::new(["c1", "c3"]);
        for node in uuids(2000) {
            let was = before.owner(&node).expect("owner");
            if was != "c2" {
                assert_eq!(after.owner(&node), Some(was), "{node} moved though its owner stayed");
            } else {
                assert_ne!(after.owner(&node), Some("c2"));
            }
        }
    }

    #[test]
    fn the_order_of_hosts_does_not_matter() {
        let a = HashRing::new(["c1", "c2", "c3"]);
        let b = HashRing::new(["c3", "c1", "c2", "c1"]);
        for node in uuids(200) {
            assert_eq!(a.owner(&node), b.owner(&node));
        }
    }
}
