//! No two top-level modules of `src/` depend on each other, directly or through others: the
//! command tree (`cli`, `commands`, `serve`, `main`) sits on top, each part below it, shared
//! helpers below the parts. A cycle means a part reaches up into what composes it (a flag group
//! importing the CLI, say), and then no part can be understood, tested or moved alone.
//!
//! Production code only: test modules may use anything.

mod source;

use std::collections::{BTreeMap, BTreeSet};

use source::{SourceFile, Token, production_code, read_tree, src_dir, tokens};

/// Where a dependency shows: the first file and line that refers to the other module.
type Evidence = (String, usize);

/// module -> the modules it refers to, each with its first evidence.
type Graph = BTreeMap<String, BTreeMap<String, Evidence>>;

/// The top-level module a file belongs to and how deep in the module tree it sits (`a.rs` and
/// `a/mod.rs` are 1, `a/b.rs` is 2); `None` for the crate roots.
fn module_of(path: &str) -> Option<(String, usize)> {
    let parts: Vec<&str> = path.split('/').collect();
    let top = parts[0].trim_end_matches(".rs");
    if parts.len() == 1 && matches!(top, "lib" | "main") {
        return None;
    }
    let depth = if parts.last() == Some(&"mod.rs") {
        parts.len() - 1
    } else {
        parts.len()
    };
    Some((top.to_owned(), depth))
}

/// The first segments of the crate-rooted paths in `code` with their lines: `crate::a::X` and
/// `use crate::{a, b::c}` give `a` and `b`; `super::` reaching the crate root (from a file
/// `depth` deep) counts as `crate::`.
fn root_references(code: &str, depth: usize) -> Vec<(String, usize)> {
    let tokens = tokens(code);
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let starts_path = i == 0 || tokens[i - 1].text != "::";
        let after_root = match tokens[i].text.as_str() {
            "crate" if starts_path => Some(i + 1),
            "super" if starts_path => {
                // Count `super ::` pairs; enough of them climb to the crate root.
                let mut j = i;
                let mut climbs = 0;
                while tokens.get(j).is_some_and(|t| t.text == "super")
                    && tokens.get(j + 1).is_some_and(|t| t.text == "::")
                {
                    climbs += 1;
                    j += 2;
                }
                (climbs >= depth && climbs > 0).then(|| j - 1)
            }
            _ => None,
        };
        if let Some(sep) = after_root
            && tokens.get(sep).is_some_and(|t| t.text == "::")
        {
            collect_segments(&tokens, sep + 1, &mut out);
        }
        i += 1;
    }
    out
}

/// The first segment at `at` (an identifier), or each item's first segment when `at` opens a
/// `{ ... }` group.
fn collect_segments(tokens: &[Token], at: usize, out: &mut Vec<(String, usize)>) {
    let Some(token) = tokens.get(at) else { return };
    if token.text != "{" {
        if token.text.chars().all(|c| c.is_alphanumeric() || c == '_') {
            out.push((token.text.clone(), token.line));
        }
        return;
    }
    let mut depth = 0;
    let mut item_start = true;
    for token in &tokens[at..] {
        match token.text.as_str() {
            "{" => {
                depth += 1;
                if depth == 1 {
                    item_start = true;
                }
            }
            "}" => {
                depth -= 1;
                if depth == 0 {
                    return;
                }
            }
            "," if depth == 1 => item_start = true,
            text if depth == 1 && item_start => {
                item_start = false;
                if text.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    out.push((text.to_owned(), token.line));
                }
            }
            _ => {}
        }
    }
}

/// The dependencies between the top-level modules of these files.
fn graph(files: &[SourceFile]) -> Graph {
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|f| module_of(&f.path))
        .map(|(m, _)| m)
        .collect();
    let mut graph: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    for file in files {
        let Some((from, depth)) = module_of(&file.path) else {
            continue;
        };
        for (to, line) in root_references(&file.code, depth) {
            if to != from && modules.contains(&to) {
                graph
                    .get_mut(&from)
                    .expect("every module has an entry")
                    .entry(to)
                    .or_insert_with(|| (file.path.clone(), line));
            }
        }
    }
    graph
}

/// Every set of modules that depend on each other (strongly connected, more than one module),
/// each sorted, in the order found.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    // Tarjan's algorithm, iterative over explicit frames so depth is no concern.
    struct Walk<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, root: &'g str) {
            let mut frames: Vec<(&'g str, Vec<&'g str>)> = Vec::new();
            self.enter(root, &mut frames);
            while let Some((node, pending)) = frames.last_mut() {
                let node = *node;
                if let Some(next) = pending.pop() {
                    if !self.index.contains_key(next) {
                        self.enter(next, &mut frames);
                    } else if self.on_stack.contains(next) {
                        let low = self.low[node].min(self.index[next]);
                        self.low.insert(node, low);
                    }
                    continue;
                }
                frames.pop();
                if let Some((parent, _)) = frames.last() {
                    let low = self.low[*parent].min(self.low[node]);
                    self.low.insert(parent, low);
                }
                if self.low[node] == self.index[node] {
                    let mut component = Vec::new();
                    while let Some(member) = self.stack.pop() {
                        self.on_stack.remove(member);
                        component.push(member.to_owned());
                        if member == node {
                            break;
                        }
                    }
                    if component.len() > 1 {
                        component.sort();
                        self.found.push(component);
                    }
                }
            }
        }

        fn enter(&mut self, node: &'g str, frames: &mut Vec<(&'g str, Vec<&'g str>)>) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            let next = self.graph.get(node).map_or_else(Vec::new, |deps| {
                deps.keys().rev().map(String::as_str).collect()
            });
            frames.push((node, next));
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            walk.visit(node);
        }
    }
    walk.found
}

/// Each cycle with the references that make it, for a failure message.
fn explain(graph: &Graph, cycles: &[Vec<String>]) -> String {
    let mut text = String::new();
    for component in cycles {
        text.push_str(&format!("modules depending on each other: {component:?}\n"));
        for from in component {
            for (to, (file, line)) in &graph[from] {
                if component.contains(to) {
                    text.push_str(&format!("  {from} -> {to} (src/{file}:{line})\n"));
                }
            }
        }
    }
    text
}

#[test]
fn top_level_modules_form_no_cycle() {
    let files = read_tree(&src_dir());
    let graph = graph(&files);
    // The walk saw the crate: a broken reader would find no edges and pass vacuously.
    assert!(
        graph.contains_key("serve") && graph.contains_key("health"),
        "{graph:?}"
    );
    assert!(
        graph["serve"].contains_key("exporter"),
        "{:?}",
        graph["serve"]
    );
    let cycles = cycles(&graph);
    assert!(cycles.is_empty(), "{}", explain(&graph, &cycles));
}

fn file(path: &str, text: &str) -> SourceFile {
    SourceFile {
        path: path.to_owned(),
        code: production_code(text),
    }
}

#[test]
fn a_made_up_cycle_is_found_and_named() {
    let files = [
        file("lib.rs", "pub mod cli; pub mod parts; pub mod util;"),
        file("cli.rs", "use crate::parts::Args;\n"),
        // Two levels down, reaching the CLI with `super::super`, inside a group.
        file(
            "parts/args.rs",
            "use super::Settings;\nuse super::super::{util, cli::parse};\n",
        ),
        file("parts/mod.rs", "pub mod args;\npub struct Settings;\n"),
        file("util.rs", "pub fn parse() {}\n"),
    ];
    let graph = graph(&files);
    let cycles = cycles(&graph);
    assert_eq!(cycles, [["cli", "parts"]]);
    let text = explain(&graph, &cycles);
    assert!(text.contains("cli -> parts (src/cli.rs:1)"), "{text}");
    assert!(
        text.contains("parts -> cli (src/parts/args.rs:2)"),
        "{text}"
    );
    assert!(!text.contains("util"), "{text}");

    // The parser moved below both: no cycle.
    let mut fixed = files.to_vec();
    fixed[2] = file("parts/args.rs", "use crate::util::parse;\n");
    assert!(cycles_of(&fixed).is_empty());
}

fn cycles_of(files: &[SourceFile]) -> Vec<Vec<String>> {
    cycles(&graph(files))
}

#[test]
fn references_in_comments_strings_and_tests_are_not_dependencies() {
    let files = [
        file("a.rs", "pub fn f() { crate::b::g() }\n"),
        file(
            "b.rs",
            "//! See [`crate::a`].\n\
             pub fn g() { let _ = \"crate::a\"; }\n\
             #[cfg(test)]\nmod tests { use crate::a::f; }\n",
        ),
    ];
    assert!(cycles_of(&files).is_empty());
    let mut cyclic = files.to_vec();
    cyclic[1] = file("b.rs", "pub fn g() { crate::a::f() }\n");
    assert_eq!(cycles_of(&cyclic), [["a", "b"]]);
}

#[test]
fn a_longer_cycle_is_one_component() {
    let graph: Graph = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("e", "a")]
        .into_iter()
        .fold(Graph::new(), |mut graph, (from, to)| {
            graph
                .entry(from.to_owned())
                .or_default()
                .insert(to.to_owned(), (format!("{from}.rs"), 1));
            graph.entry(to.to_owned()).or_default();
            graph
        });
    assert_eq!(cycles(&graph), [["a", "b", "c"]]);
}

#[test]
fn comments_literals_and_test_items_are_not_code() {
    let text = r####"
use crate::a; // crate::b
/* crate::c /* nested crate::d */ crate::e */
const S: &str = "crate::f \" { ";
const R: &str = r#"crate::g " { "#;
const C: char = '{';
const E: char = '\'';
fn f<'a>(x: &'a str) -> &'a str { let _ = b'}'; x }
#[cfg(test)]
mod tests {
    use crate::h;
}
#[test]
fn t() { crate::i(); }
pub fn after() { crate::j(); }
"####;
    let code = production_code(text);
    assert_eq!(code.lines().count(), text.lines().count(), "lines are kept");
    for gone in [
        "crate::b", "crate::c", "crate::d", "crate::e", "crate::f", "crate::g",
    ] {
        assert!(!code.contains(gone), "{gone} in {code}");
    }
    for gone in ["crate::h", "crate::i", "mod tests"] {
        assert!(!code.contains(gone), "{gone} in {code}");
    }
    for kept in [
        "use crate::a;",
        "fn f<'a>(x: &'a str)",
        "pub fn after() { crate::j(); }",
    ] {
        assert!(code.contains(kept), "{kept} not in {code}");
    }
    // The braces left are balanced: the literals' braces are gone.
    let opens = code.matches('{').count();
    assert_eq!(opens, code.matches('}').count(), "{code}");
}
