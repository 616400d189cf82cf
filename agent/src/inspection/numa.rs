//! The `numa-topology` collector (IPA 13 `numa_inspector.collect_numa_topology_info`): memory,
//! CPU cores and NICs per NUMA node, from `/sys/devices/system/node` and `/sys/class/net`.
//!
//! As upstream, anything unexpected (no NUMA directory, an unreadable or malformed file) is a
//! warning and the collector adds nothing; it never fails the inspection.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::inventory::{SysRoot, sorted_entries};

/// `data["numa_topology"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NumaTopology {
    /// Memory of each node.
    pub ram: Vec<NumaRam>,
    /// Physical cores of each node with their hardware threads.
    pub cpus: Vec<NumaCpu>,
    /// Network interfaces whose device names a node.
    pub nics: Vec<NumaNic>,
}

/// Memory of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NumaRam {
    /// Node id.
    pub numa_node: u32,
    /// `MemTotal` of the node, KiB.
    pub size_kb: u64,
}

/// One physical core (a `core_id` within its node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NumaCpu {
    /// Logical CPU numbers (`cpuN`) sharing the core.
    pub thread_siblings: Vec<u32>,
    /// `topology/core_id`.
    pub cpu: u64,
    /// Node id.
    pub numa_node: u32,
}

/// A network interface on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NumaNic {
    /// Interface name.
    pub name: String,
    /// `device/numa_node` (`-1` when the firmware does not say).
    pub numa_node: i64,
}

/// The topology of the machine under `root`; `None` (with a warning) when it cannot be read.
pub fn collect(root: &SysRoot) -> Option<NumaTopology> {
    let nodes_dir = root.0.join("sys/devices/system/node");
    if !nodes_dir.is_dir() {
        tracing::warn!(path = %nodes_dir.display(), "no NUMA node directory: NUMA topology not collected");
        return None;
    }
    match topology(root, &nodes_dir) {
        Ok(topology) => Some(topology),
        Err(e) => {
            tracing::warn!(error = %e, "failed to get some NUMA information");
            None
        }
    }
}

fn topology(root: &SysRoot, nodes_dir: &Path) -> Result<NumaTopology, String> {
    let mut nodes: Vec<(u32, std::path::PathBuf)> = Vec::new();
    for name in sorted_entries(nodes_dir) {
        let path = nodes_dir.join(&name);
        if !(name.starts_with("node") && path.is_dir()) {
            continue;
        }
        let id = name[4..]
            .parse::<u32>()
            .map_err(|e| format!("Failed to get NUMA node id for {}: {e}", path.display()))?;
        nodes.push((id, path));
    }
    nodes.sort();
    Ok(NumaTopology {
        ram: nodes
            .iter()
            .map(|(id, path)| node_memory(*id, path))
            .collect::<Result<_, _>>()?,
        cpus: cores(&nodes)?,
        nics: nics(&root.0.join("sys/class/net"))?,
    })
}

/// `MemTotal` of a node's `meminfo` (`Node 0 MemTotal:  5859100 kB`) in KiB; upstream's units
/// are kB = KB = 1, MB = 1024, GB = 1048576.
fn node_memory(id: u32, dir: &Path) -> Result<NumaRam, String> {
    let text = fs::read_to_string(dir.join("meminfo"))
        .map_err(|e| format!("Failed to get memory information for {}: {e}", dir.display()))?;
    let line = text
        .lines()
        .find(|l| l.contains("MemTotal"))
        .ok_or_else(|| format!("Memory information is not available for {}", dir.display()))?;
    let bad = || format!("Failed to get memory information for {}: {line:?}", dir.display());
    let value = line.split(':').nth(1).ok_or_else(bad)?.trim();
    let (number, unit) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    let scale = match unit.trim() {
        "" | "kB" | "KB" => 1.0,
        "MB" => 1024.0,
        "GB" => 1_048_576.0,
        _ => return Err(bad()),
    };
    let number: f64 = number.parse().map_err(|_| bad())?;
    Ok(NumaRam {
        numa_node: id,
        size_kb: (number * scale) as u64,
    })
}

/// Cores of every node: threads (`cpuN` directories) grouped by `(node, core_id)`, in node
/// then thread order.
fn cores(nodes: &[(u32, std::path::PathBuf)]) -> Result<Vec<NumaCpu>, String> {
    let mut out: Vec<NumaCpu> = Vec::new();
    let mut index: BTreeMap<(u32, u64), usize> = BTreeMap::new();
    for (node, dir) in nodes {
        let mut threads = Vec::new();
        for name in sorted_entries(dir) {
            if !(name.starts_with("cpu") && dir.join(&name).is_dir()) {
                continue;
            }
            let thread: u32 = name[3..]
                .parse()
                .map_err(|e| format!("Failed to get cores information for {}: {e}", dir.display()))?;
            threads.push((thread, name));
        }
        threads.sort();
        for (thread, name) in threads {
            let path = dir.join(&name).join("topology/core_id");
            let core: u64 = fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| t.trim().parse().map_err(|e: std::num::ParseIntError| e.to_string()))
                .map_err(|e| format!("Failed to gather cpu_id for thread {name} NUMA node {node}: {e}"))?;
            match index.get(&(*node, core)) {
                Some(&at) => {
                    if !out[at].thread_siblings.contains(&thread) {
                        out[at].thread_siblings.push(thread);
                    }
                }
                None => {
                    index.insert((*node, core), out.len());
                    out.push(NumaCpu {
                        thread_siblings: vec![thread],
                        cpu: core,
                        numa_node: *node,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Interfaces of `net_dir` with a `device/numa_node`, by name.
fn nics(net_dir: &Path) -> Result<Vec<NumaNic>, String> {
    if !net_dir.is_dir() {
        return Err(format!(
            "Failed to get list of NIC's, NIC device path does not exist: {}",
            net_dir.display()
        ));
    }
    let mut out = Vec::new();
    for name in sorted_entries(net_dir) {
        let path = net_dir.join(&name).join("device/numa_node");
        if !path.is_file() {
            continue;
        }
        let numa_node: i64 = fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| t.trim().parse().map_err(|e: std::num::ParseIntError| e.to_string()))
            .map_err(|e| format!("Failed to gather NIC's for NUMA node {name}: {e}"))?;
        out.push(NumaNic { name, numa_node });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspection::tests::write;

    #[test]
    fn two_nodes_with_hyperthreads() {
        let dir = tempfile::tempdir().expect("tmp");
        let r = dir.path();
        let node = "sys/devices/system/node";
        write(
            r,
            &format!("{node}/node0/meminfo"),
            "Node 0 MemTotal:       32768 kB\nNode 0 MemFree: 1 kB\n",
        );
        write(r, &format!("{node}/node1/meminfo"), "Node 1 MemTotal:       2 MB\n");
        write(r, &format!("{node}/node0/cpulist"), "0-1,4\n");
        write(r, &format!("{node}/online"), "0-1\n");
        for (node_id, thread, core) in [(0, 0, 0), (0, 4, 0), (0, 1, 1), (1, 2, 0), (1, 3, 0)] {
            write(
                r,
                &format!("{node}/node{node_id}/cpu{thread}/topology/core_id"),
                &format!("{core}\n"),
            );
        }
        write(r, "sys/class/net/eno1/device/numa_node", "1\n");
        write(r, "sys/class/net/eno2/device/numa_node", "-1\n");
        write(r, "sys/class/net/lo/address", "00:00:00:00:00:00\n");
        let topology = collect(&SysRoot(r.to_owned())).expect("collected");
        assert_eq!(
            serde_json::to_value(&topology).expect("serialises"),
            serde_json::json!({
                "ram": [{"numa_node": 0, "size_kb": 32768}, {"numa_node": 1, "size_kb": 2048}],
                "cpus": [
                    {"thread_siblings": [0, 4], "cpu": 0, "numa_node": 0},
                    {"thread_siblings": [1], "cpu": 1, "numa_node": 0},
                    {"thread_siblings": [2, 3], "cpu": 0, "numa_node": 1},
                ],
                "nics": [{"name": "eno1", "numa_node": 1}, {"name": "eno2", "numa_node": -1}],
            })
        );
    }

    #[test]
    fn problems_mean_no_topology() {
        let dir = tempfile::tempdir().expect("tmp");
        let r = dir.path();
        assert_eq!(collect(&SysRoot(r.to_owned())), None, "no NUMA directory");
        write(r, "sys/devices/system/node/node0/meminfo", "Node 0 MemFree: 1 kB\n");
        write(r, "sys/class/net/.keep", "");
        assert_eq!(collect(&SysRoot(r.to_owned())), None, "no MemTotal");
        write(r, "sys/devices/system/node/node0/meminfo", "Node 0 MemTotal: 1 TB\n");
        assert_eq!(collect(&SysRoot(r.to_owned())), None, "unknown unit");
        write(r, "sys/devices/system/node/node0/meminfo", "Node 0 MemTotal: 4 kB\n");
        let ok = collect(&SysRoot(r.to_owned())).expect("readable now");
        assert_eq!(
            ok.ram,
            [NumaRam {
                numa_node: 0,
                size_kb: 4
            }]
        );
        assert!(ok.cpus.is_empty() && ok.nics.is_empty());
    }
}
