//! Data flows one way through the crate: sources feed the core (accept, route, pipeline and
//! processors, delivery), which feeds the backend; the configuration only assembles each
//! part's own settings. This test reads every `crate::<module>` path under `src/` (tests
//! left out) and fails on any import cycle between top-level modules, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which top-level modules each top-level module refers to.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn source_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

/// The crate's module graph, from the `crate::<module>` paths in each file's code outside
/// its `#[cfg(test)]` module.
fn module_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    source_files(src, &mut files);
    let module_of = |path: &Path| -> String {
        let relative = path.strip_prefix(src).unwrap();
        let first = relative.components().next().unwrap().as_os_str().to_string_lossy();
        first.trim_end_matches(".rs").to_owned()
    };
    let modules: BTreeSet<String> = files
        .iter()
        .map(|path| module_of(path))
        .filter(|module| module != "main" && module != "lib")
        .collect();
    let mut graph = Graph::new();
    for path in &files {
        let from = module_of(path);
        if !modules.contains(&from) {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let edges = graph.entry(from.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if name != from && modules.contains(&name) {
                edges.insert(name);
            }
        }
    }
    graph
}

/// The strongly connected groups of more than one module: each is an import cycle.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    // Two modules are on one cycle when each reaches the other.
    let reaches = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(module) = stack.pop() {
            for next in graph.get(&module).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|module| (module, reaches(module))).collect();
    let mut grouped = BTreeSet::new();
    let mut found = Vec::new();
    for module in graph.keys() {
        if grouped.contains(module) || !reach[module].contains(module) {
            continue;
        }
        let group: Vec<String> = graph
            .keys()
            .filter(|other| reach[module].contains(*other) && reach[*other].contains(module))
            .cloned()
            .collect();
        grouped.extend(group.iter().cloned());
        found.push(group);
    }
    found
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.len() > 10, "the crate's modules are found: {graph:?}");
    let found = cycles(&graph);
    let shown: Vec<String> = graph.iter().map(|(module, uses)| format!("{module} -> {uses:?}")).collect();
    assert!(found.is_empty(), "import cycles between modules: {found:?}\n{}", shown.join("\n"));
}

#[test]
fn a_cycle_between_two_modules_is_found_and_named() {
    let mut graph = Graph::new();
    let edge = |graph: &mut Graph, from: &str, to: &str| {
        graph.entry(from.into()).or_default().insert(to.into());
        graph.entry(to.into()).or_default();
    };
    edge(&mut graph, "config", "http");
    edge(&mut graph, "http", "relay");
    edge(&mut graph, "startup", "config");
    assert!(cycles(&graph).is_empty());
    edge(&mut graph, "relay", "config");
    assert_eq!(cycles(&graph), [vec!["config".to_owned(), "http".into(), "relay".into()]]);
}
