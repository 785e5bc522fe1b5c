//! The dependency direction of `src/`'s top-level modules, read from the source: every
//! `crate::<module>` path (in `use` lines and inline, tests included; comments skipped) is an
//! edge. The graph must be acyclic and follow the documented layers (README, Layout):
//! `registry` and `model` import nothing of ours; `recipe` → `plan` → `merge` each import
//! only what lies below; `eval` imports only `model`; `search` and `zoo` sit on top of the
//! merge engine and the evaluator; `cli` on top of everything; nothing imports `cli`.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layer of each top-level module: a module may import only modules of a lower layer.
const LAYERS: &[(&str, u32)] = &[
    ("registry", 0),
    ("model", 0),
    ("recipe", 1),
    ("eval", 1),
    ("plan", 2),
    ("merge", 3),
    ("zoo", 4),
    ("search", 5),
    ("cli", 6),
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module → the top-level modules its files name through `crate::`.
fn edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for top in std::fs::read_dir(src).unwrap() {
        let top = top.unwrap().path();
        let name = top.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "lib" || name == "main" {
            continue;
        }
        let mut files = Vec::new();
        if top.is_dir() {
            rust_files(&top, &mut files);
        } else {
            files.push(top.clone());
        }
        let deps = graph.entry(name.clone()).or_default();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for line in text.lines() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                let code = code.split("//").next().unwrap_or("");
                let mut rest = code;
                while let Some(at) = rest.find("crate::") {
                    let after = &rest[at + "crate::".len()..];
                    let module: String = after
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !module.is_empty() && module != name {
                        deps.insert(module);
                    }
                    rest = after;
                }
                // `use crate::{a, b}` names several modules at once
                if let Some(group) = code.strip_prefix("use crate::{") {
                    for part in group.split(',') {
                        let m: String = part
                            .trim()
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if !m.is_empty() && m != name {
                            deps.insert(m);
                        }
                    }
                }
            }
        }
    }
    graph
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_module_graph_of_src_is_acyclic_and_points_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = edges(&src);
    let layers: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    for module in graph.keys() {
        assert!(
            layers.contains_key(module.as_str()),
            "src/{module} has no layer in this test; add it to LAYERS and to the README's Layout"
        );
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}", cycle.join(" → "));
    }
    let mut wrong = Vec::new();
    for (module, deps) in &graph {
        for dep in deps {
            match layers.get(dep.as_str()) {
                Some(l) if *l < layers[module.as_str()] => {}
                _ => wrong.push(format!("{module} → {dep}")),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers {LAYERS:?}: {wrong:?}"
    );
    // the registry is a leaf; the edges this change removed stay removed
    assert!(graph["registry"].is_empty(), "{:?}", graph["registry"]);
    assert!(graph["model"].is_empty(), "{:?}", graph["model"]);
    for (from, to) in [("recipe", "merge"), ("plan", "merge")] {
        assert!(!graph[from].contains(to), "{from} imports {to}");
    }
}

#[test]
fn the_checker_sees_a_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("plan", vec!["merge"]),
        ("merge", vec!["plan", "model"]),
        ("model", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    let cycle = find_cycle(&graph).unwrap();
    assert_eq!(cycle.first(), cycle.last());
    assert!(cycle.contains(&"plan".to_string()) && cycle.contains(&"merge".to_string()));
}
