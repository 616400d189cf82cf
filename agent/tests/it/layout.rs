//! The agent's modules form no import cycle (issue 15): each module is read as text, every
//! path it names (`crate::…`, `super::…`, and its own submodules) becomes an edge to the module
//! that path lands in, and the graph must be acyclic, parent-child edges included. This is
//! stricter than `cargo modules dependencies` (which sees `use` items and signatures, not
//! function bodies); docs/architecture.md gives that command for the item-level view.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let Some(rel) = path.strip_prefix(src).ok().and_then(|r| r.to_str()) else {
                continue;
            };
            let Some(rel) = rel.strip_suffix(".rs") else { continue };
            let mut parts: Module = rel.split('/').map(str::to_owned).collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["main"] {
                continue;
            }
            if parts == ["lib"] {
                parts.clear();
            }
            out.insert(parts, path);
        }
    }
    out
}

/// The text the compiler sees outside tests, without comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read module");
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Paths of the form `head::a::b` with their starting module.
fn named_paths(code: &str, module: &Module) -> Vec<(Module, Vec<String>)> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if !ident(bytes[i]) || (i > 0 && (ident(bytes[i - 1]) || bytes[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && (ident(bytes[i]) || (bytes[i] == b':' && bytes.get(i + 1) == Some(&b':'))) {
            i += if bytes[i] == b':' { 2 } else { 1 };
        }
        let path: Vec<String> = code[start..i]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if path.len() < 2 {
            continue;
        }
        let mut base = module.clone();
        let mut rest = path.as_slice();
        match rest[0].as_str() {
            "crate" => {
                base.clear();
                rest = &rest[1..];
            }
            "super" => {
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
            }
            _ => {}
        }
        // `crate::{a, b::c}`: each member of a brace group.
        let groups: Vec<Vec<String>> = if code[i..].starts_with('{') {
            let end = code[i..].find('}').map_or(i, |e| i + e);
            code[i + 1..end]
                .split(',')
                .map(|m| {
                    m.trim()
                        .split("::")
                        .filter(|s| !s.is_empty() && *s != "self")
                        .map(str::to_owned)
                        .collect()
                })
                .collect()
        } else {
            vec![Vec::new()]
        };
        for group in groups {
            let mut full = rest.to_vec();
            full.extend(group);
            out.push((base.clone(), full));
        }
    }
    out
}

/// The longest module that `base` + `path` lands in (or `None` outside the crate).
fn resolve(mods: &BTreeMap<Module, PathBuf>, base: &Module, path: &[String]) -> Option<Module> {
    let mut full = base.clone();
    full.extend(path.iter().cloned());
    (1..=full.len())
        .rev()
        .map(|n| full[..n].to_vec())
        .find(|m| mods.contains_key(m))
}

fn cycle(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    fn visit(
        node: &Module,
        edges: &BTreeMap<Module, BTreeSet<Module>>,
        state: &mut BTreeMap<Module, bool>,
        path: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        state.insert(node.clone(), false);
        path.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next) {
                Some(false) => {
                    let at = path.iter().position(|m| m == next).unwrap_or(0);
                    let mut found = path[at..].to_vec();
                    found.push(next.clone());
                    return Some(found);
                }
                Some(true) => {}
                None => {
                    if let Some(found) = visit(next, edges, state, path) {
                        return Some(found);
                    }
                }
            }
        }
        path.pop();
        state.insert(node.clone(), true);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if !state.contains_key(node)
            && let Some(found) = visit(node, edges, &mut state, &mut Vec::new())
        {
            return Some(found);
        }
    }
    None
}

fn show(m: &Module) -> String {
    if m.is_empty() { "crate".into() } else { m.join("::") }
}

#[test]
fn the_agents_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&src);
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, path) in &mods {
        for (base, named) in named_paths(&code(path), module) {
            // A bare `a::b` counts only when `a` is a submodule of this module.
            if base == *module && !mods.contains_key(&[module.clone(), vec![named[0].clone()]].concat()) {
                continue;
            }
            if let Some(target) = resolve(&mods, &base, &named)
                && target != *module
            {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    assert!(edges.len() > 20, "the scan found the modules: {edges:?}");
    // The scan sees the layers it should (a check that it reads paths at all).
    let uses = |from: &str, to: &str| {
        edges
            .iter()
            .any(|(k, v)| k.first().is_some_and(|f| f == from) && v.iter().any(|t| t.first().is_some_and(|f| f == to)))
    };
    assert!(uses("image", "disk") && uses("state", "hardware") && uses("hardware", "progress"));
    if let Some(found) = cycle(&edges) {
        panic!(
            "import cycle among the agent's modules: {}",
            found.iter().map(show).collect::<Vec<_>>().join(" -> ")
        );
    }
}
