//! Reads fluxgate's own sources for the tests that check their shape (`module_graph.rs`,
//! `function_length.rs`): the production code of each file under `src/`, with comments, string
//! and character literals blanked and `#[cfg(test)]` items removed, so that neither a word in a
//! doc comment nor a test module counts. Line numbers are kept: blanked text keeps its newlines.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// One `.rs` file under `src/`.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Relative to `src/`, with `/` separators.
    pub path: String,
    /// Its production code (see [`production_code`]).
    pub code: String,
}

/// Every `.rs` file under `root`, sorted by path.
pub fn read_tree(root: &Path) -> Vec<SourceFile> {
    let mut paths = Vec::new();
    collect(root, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let relative = path
                .strip_prefix(root)
                .expect("under the root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            SourceFile {
                path: relative,
                code: production_code(&text),
            }
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The crate's `src/` directory.
pub fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `text` without comments, literal contents and test-only items.
pub fn production_code(text: &str) -> String {
    without_test_items(&mask(text))
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Comments and the contents of string and character literals replaced by spaces (newlines
/// kept), so that braces and paths inside them are not read as code. Lifetimes stay.
pub fn mask(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<char> = chars.clone();
    let blank = |out: &mut Vec<char>, from: usize, to: usize| {
        for c in &mut out[from..to.min(chars.len())] {
            if *c != '\n' {
                *c = ' ';
            }
        }
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            let end = chars[i..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(chars.len(), |n| i + n);
            blank(&mut out, i, end);
            i = end;
        } else if c == '/' && next == Some('*') {
            // Block comments nest.
            let mut depth = 0;
            let mut j = i;
            while j < chars.len() {
                if chars[j] == '/' && chars.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if chars[j] == '*' && chars.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if c == '"' {
            let end = string_end(&chars, i + 1);
            blank(&mut out, i + 1, end.saturating_sub(1));
            i = end;
        } else if c == '\'' {
            match char_literal_end(&chars, i) {
                Some(end) => {
                    blank(&mut out, i + 1, end - 1);
                    i = end;
                }
                // A lifetime or a label.
                None => i += 1,
            }
        } else if is_ident(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let raw_prefix = matches!(word.as_str(), "r" | "br" | "cr");
            if raw_prefix && matches!(chars.get(i), Some('"' | '#')) {
                let hashes = chars[i..].iter().take_while(|&&c| c == '#').count();
                if chars.get(i + hashes) == Some(&'"') {
                    let body = i + hashes + 1;
                    let end = raw_string_end(&chars, body, hashes);
                    blank(&mut out, body, end.saturating_sub(hashes + 1));
                    i = end;
                }
                // Otherwise a raw identifier (`r#type`): its name is read next.
            } else if matches!(word.as_str(), "b" | "c") && chars.get(i) == Some(&'"') {
                let end = string_end(&chars, i + 1);
                blank(&mut out, i + 1, end.saturating_sub(1));
                i = end;
            } else if word == "b"
                && chars.get(i) == Some(&'\'')
                && let Some(end) = char_literal_end(&chars, i)
            {
                blank(&mut out, i + 1, end - 1);
                i = end;
            }
        } else {
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// Index just past the closing quote of a string whose contents start at `from`.
fn string_end(chars: &[char], from: usize) -> usize {
    let mut j = from;
    while j < chars.len() {
        match chars[j] {
            '\\' => j += 2,
            '"' => return j + 1,
            _ => j += 1,
        }
    }
    chars.len()
}

/// Index just past `"` followed by `hashes` `#`s, from `from` on.
fn raw_string_end(chars: &[char], from: usize, hashes: usize) -> usize {
    let mut j = from;
    while j < chars.len() {
        if chars[j] == '"'
            && chars[j + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == '#')
                .count()
                == hashes
        {
            return j + 1 + hashes;
        }
        j += 1;
    }
    chars.len()
}

/// When a character literal starts at `at` (a `'`), the index just past it; `None` for a
/// lifetime or label (`'a`, `'static`, `'outer:`).
fn char_literal_end(chars: &[char], at: usize) -> Option<usize> {
    match chars.get(at + 1)? {
        // The escaped character itself may be a quote: `'\''`.
        '\\' => {
            let close = chars.get(at + 3..)?.iter().position(|&c| c == '\'')?;
            Some(at + 3 + close + 1)
        }
        _ if chars.get(at + 2) == Some(&'\'') => Some(at + 3),
        _ => None,
    }
}

/// Masked code with every `#[cfg(test)]` item (and `#[test]` function) blanked; a file marked
/// `#![cfg(test)]` is blank as a whole.
pub fn without_test_items(code: &str) -> String {
    if code.contains("#![cfg(test)]") {
        return code
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
    }
    let mut chars: Vec<char> = code.chars().collect();
    for marker in ["#[cfg(test)]", "#[test]"] {
        let marker: Vec<char> = marker.chars().collect();
        let mut i = 0;
        while i + marker.len() <= chars.len() {
            if chars[i..i + marker.len()] == marker[..] {
                let end = item_end(&chars, i + marker.len());
                for c in &mut chars[i..end] {
                    if *c != '\n' {
                        *c = ' ';
                    }
                }
                i = end;
            } else {
                i += 1;
            }
        }
    }
    chars.into_iter().collect()
}

/// The end of the item that starts at `from` (after its attributes): its `;` or the brace
/// closing its body, whichever comes first outside parentheses and brackets.
pub fn item_end(chars: &[char], from: usize) -> usize {
    let mut nesting = 0usize;
    let mut j = from;
    while j < chars.len() {
        match chars[j] {
            '(' | '[' => nesting += 1,
            ')' | ']' => nesting = nesting.saturating_sub(1),
            ';' if nesting == 0 => return j + 1,
            '{' if nesting == 0 => return matching_brace(chars, j).map_or(chars.len(), |e| e + 1),
            _ => {}
        }
        j += 1;
    }
    chars.len()
}

/// Index of the `}` closing the `{` at `open`.
pub fn matching_brace(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (j, &c) in chars.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

/// The 1-based line of char index `at`.
pub fn line_of(chars: &[char], at: usize) -> usize {
    chars[..at.min(chars.len())]
        .iter()
        .filter(|&&c| c == '\n')
        .count()
        + 1
}

/// Identifiers and punctuation of masked code, each with its 1-based line. `::` is one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub line: usize,
}

pub fn tokens(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if is_ident(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            out.push(Token {
                text: chars[start..i].iter().collect(),
                line,
            });
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push(Token {
                text: "::".to_owned(),
                line,
            });
            i += 2;
        } else {
            out.push(Token {
                text: c.to_string(),
                line,
            });
            i += 1;
        }
    }
    out
}
