//! The modules of crates/exporter import one way: no module reaches, directly or through
//! others, a module that reaches it back. Run it alone with
//! `cargo test -p promdrop-exporter --test module_graph`; on failure it prints the cycle.
//!
//! It reads `src/`: every `crate::NAME` path (also inside `use crate::{a, b::c}` groups) is an
//! edge from the file's top-level module (`src/a.rs` and `src/a/*.rs` are module `a`) to the
//! module `NAME`. `lib.rs` and `main.rs` are the root that wires the modules together and are
//! not modules of the graph; a module must name the module that owns an item
//! (`crate::error::Error`), not reach it through the root's re-exports (`crate::Error`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module name -> the modules it names.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The source of `text` without comments (line comments and doc comments; the exporter has no
/// block comments that hold paths).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn identifier(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The first path segments after each `crate::` in `code`, groups included.
fn named(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group: split on commas at brace depth 0.
            let mut depth = 0;
            let mut start = 0;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.push(identifier(group[start..j].trim()).to_string());
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(identifier(group[start..j].trim()).to_string());
                        start = j + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.push(identifier(rest).to_string());
        }
    }
    out.retain(|name| !name.is_empty());
    out
}

fn graph(src: &Path) -> (Graph, Vec<String>) {
    let mut files = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let module_of = |path: &Path| -> String {
        let relative = path.strip_prefix(src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        Path::new(first)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let modules: BTreeSet<String> = files
        .iter()
        .map(|p| module_of(p))
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let mut graph = Graph::new();
    let mut problems = Vec::new();
    for path in &files {
        let module = module_of(path);
        if module == "lib" || module == "main" {
            continue;
        }
        let edges = graph.entry(module.clone()).or_default();
        for name in named(&code(&std::fs::read_to_string(path).unwrap())) {
            if name == module {
                continue;
            }
            if modules.contains(&name) {
                edges.insert(name);
            } else {
                problems.push(format!(
                    "{}: crate::{name} is not a module; name the module that defines it",
                    path.display()
                ));
            }
        }
    }
    (graph, problems)
}

/// A cycle of `graph`, if there is one, as the modules along it.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        graph: &Graph,
        node: &str,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = path.iter().position(|n| n == node).unwrap();
                let mut cycle = path[start..].to_vec();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_string(), Mark::Open);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(graph, next, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(graph, node, &mut marks, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn modules_import_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (graph, problems) = graph(&src);
    for (module, edges) in &graph {
        let edges: Vec<&str> = edges.iter().map(String::as_str).collect();
        println!("{module} -> {}", edges.join(", "));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    if let Some(cycle) = cycle(&graph) {
        panic!("the modules import each other: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_check_finds_a_cycle() {
    let mut graph = Graph::new();
    graph.insert("a".into(), ["b".to_string()].into());
    graph.insert("b".into(), ["c".to_string()].into());
    graph.insert("c".into(), ["a".to_string()].into());
    assert_eq!(cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    graph.get_mut("c").unwrap().clear();
    assert_eq!(cycle(&graph), None);
    assert_eq!(
        named("use crate::{error::Error, exposition::{A, B}, gzip};\nlet x = crate::status::f();"),
        ["error", "exposition", "gzip", "status"]
    );
}
