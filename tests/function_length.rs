//! No production function in `src/` is longer than [`LIMIT`] lines, from the line of its `fn`
//! to its closing brace: past that a function does several things, and each deserves a name.
//! Test code is not measured. Nothing is exempt.

mod source;

use source::{SourceFile, item_end, line_of, production_code, read_tree, src_dir};

const LIMIT: usize = 120;

/// A function: its name, the line of its `fn` and its length in lines.
#[derive(Debug, PartialEq, Eq)]
struct Function {
    name: String,
    line: usize,
    lines: usize,
}

/// Every function with a body in `code` (production code), nested ones included.
fn functions(code: &str) -> Vec<Function> {
    let chars: Vec<char> = code.chars().collect();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 <= chars.len() {
        let keyword = chars[i..i + 2] == ['f', 'n']
            && (i == 0 || !is_ident(chars[i - 1]))
            && chars.get(i + 2).is_some_and(|c| c.is_whitespace());
        if !keyword {
            i += 1;
            continue;
        }
        let name_start = i
            + 2
            + chars[i + 2..]
                .iter()
                .take_while(|c| c.is_whitespace())
                .count();
        let name: String = chars[name_start..]
            .iter()
            .take_while(|&&c| is_ident(c))
            .collect();
        // `fn(u8) -> u8` (a type) has no name.
        if !name.is_empty() {
            let end = item_end(&chars, name_start);
            // A declaration without a body (in a trait) ends with `;`.
            if chars[end - 1] == '}' {
                let first = line_of(&chars, i);
                out.push(Function {
                    name,
                    line: first,
                    lines: line_of(&chars, end - 1) - first + 1,
                });
            }
        }
        i += 2;
    }
    out
}

/// The functions of these files longer than `limit`, as `path:line name: N lines`.
fn too_long(files: &[SourceFile], limit: usize) -> Vec<String> {
    files
        .iter()
        .flat_map(|file| {
            functions(&file.code)
                .into_iter()
                .filter(move |f| f.lines > limit)
                .map(move |f| format!("src/{}:{} {}: {} lines", file.path, f.line, f.name, f.lines))
        })
        .collect()
}

#[test]
fn no_production_function_is_longer_than_the_limit() {
    let files = read_tree(&src_dir());
    let measured: usize = files.iter().map(|f| functions(&f.code).len()).sum();
    // A broken reader would measure nothing and pass vacuously.
    assert!(measured > 400, "only {measured} functions found");
    let offenders = too_long(&files, LIMIT);
    assert!(
        offenders.is_empty(),
        "functions longer than {LIMIT} lines:\n  {}",
        offenders.join("\n  ")
    );
}

#[test]
fn lengths_are_measured_from_fn_to_the_closing_brace() {
    let body = "    let x = 1;\n".repeat(5);
    let text = format!(
        "/// Doc lines do not count.\n\
         #[inline]\n\
         pub async fn long(\n    a: [u8; 2],\n) -> u8 {{\n{body}    if a[0] > 0 {{ 1 }} else {{ 0 }}\n}}\n\
         trait T {{ fn declared(&self); fn provided(&self) {{}} }}\n\
         type F = fn(u8) -> u8;\n\
         const S: &str = \"}} fn fake() {{\";\n\
         #[cfg(test)]\nmod tests {{ fn in_a_test() {{\n\n\n\n}} }}\n"
    );
    let found = functions(&production_code(&text));
    assert_eq!(
        found,
        [
            Function {
                name: "long".into(),
                line: 3,
                lines: 10
            },
            Function {
                name: "provided".into(),
                line: 13,
                lines: 1
            },
        ]
    );
    let files = [SourceFile {
        path: "a.rs".into(),
        code: production_code(&text),
    }];
    assert_eq!(too_long(&files, 9), ["src/a.rs:3 long: 10 lines"]);
    assert!(too_long(&files, 10).is_empty());
}
