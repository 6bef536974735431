//! Reading Kubernetes manifests from files or stdin for the offline commands: JSON (one value or a
//! stream of values) or multi-document YAML, with `List` objects flattened into their items.

use std::io::Read;
use std::path::Path;

use serde_json::Value;

/// The most the offline commands read: far above any real `kubectl get -o json` of GitRepositories,
/// low enough that a wrong path (a disk image, /dev/zero) fails fast instead of exhausting memory.
pub const MAX_INPUT_BYTES: u64 = 512 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("reading {source_name}: {error}")]
    Read {
        source_name: String,
        error: std::io::Error,
    },
    #[error("{source_name} is larger than {MAX_INPUT_BYTES} bytes")]
    TooLarge { source_name: String },
    #[error("{source_name} is not UTF-8 text")]
    NotText { source_name: String },
    #[error("document {index} is not valid JSON: {error}")]
    Json {
        index: usize,
        error: serde_json::Error,
    },
    #[error("not valid YAML: {0}")]
    Yaml(serde_saphyr::Error),
    #[error("document {index} is a {found}, expected a Kubernetes object (a mapping)")]
    NotAnObject { index: usize, found: &'static str },
}

/// How a source is named in messages.
pub fn source_name(path: &Path) -> String {
    if path == Path::new("-") {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    }
}

/// Reads a whole file, or stdin for `-`, bounded by [`MAX_INPUT_BYTES`].
pub fn read_source(path: &Path) -> Result<String, ManifestError> {
    let source_name = source_name(path);
    let read_err = |error| ManifestError::Read {
        source_name: source_name.clone(),
        error,
    };
    let reader: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(path).map_err(read_err)?)
    };
    let mut bytes = Vec::new();
    reader
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(ManifestError::TooLarge { source_name });
    }
    String::from_utf8(bytes).map_err(|_| ManifestError::NotText { source_name })
}

/// Parses every object in `text`. Empty YAML documents are skipped; `List` kinds (`List`,
/// `GitRepositoryList`, ...) contribute their items.
///
/// Text that opens with `{` or `[` is read as a JSON stream first (what `kubectl get -o json`
/// writes); when that fails it is read again as YAML, since a YAML file may open with a flow
/// collection (`{}` or `{kind: A}`). If neither reading works, the JSON error is the one reported:
/// it points at the line where the JSON went wrong.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, ManifestError> {
    let trimmed = text.trim_start();
    let documents = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        match json_documents(trimmed) {
            Ok(documents) => documents,
            Err(json_error) => yaml_documents(text).map_err(|_| json_error)?,
        }
    } else {
        yaml_documents(text)?
    };
    flatten_objects(documents)
}

/// Every value of a JSON stream, numbered from 1.
fn json_documents(text: &str) -> Result<Vec<(usize, Value)>, ManifestError> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .enumerate()
        .map(|(index, doc)| {
            doc.map(|doc| (index + 1, doc))
                .map_err(|error| ManifestError::Json {
                    index: index + 1,
                    error,
                })
        })
        .collect()
}

/// Every non-empty document of a YAML stream, numbered from 1 among all documents.
fn yaml_documents(text: &str) -> Result<Vec<(usize, Value)>, ManifestError> {
    // serde-saphyr's default budget bounds aliases, depth and document size, so a hostile
    // file fails with an error instead of exhausting memory.
    let values: Vec<Value> = serde_saphyr::from_multiple(text).map_err(ManifestError::Yaml)?;
    Ok(values
        .into_iter()
        .enumerate()
        .filter(|(_, value)| !value.is_null())
        .map(|(index, value)| (index + 1, value))
        .collect())
}

/// The Kubernetes objects in `documents`: mappings as they are, `List` kinds and top-level arrays
/// of mappings as their items.
fn flatten_objects(documents: Vec<(usize, Value)>) -> Result<Vec<Value>, ManifestError> {
    let mut objects = Vec::with_capacity(documents.len());
    for (index, doc) in documents {
        match doc {
            Value::Object(mut map) => {
                let is_list = map
                    .get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.ends_with("List"))
                    && map.get("items").is_some_and(Value::is_array);
                if is_list {
                    if let Some(Value::Array(items)) = map.remove("items") {
                        for item in items {
                            if !item.is_object() {
                                return Err(ManifestError::NotAnObject {
                                    index,
                                    found: "list item that is not a mapping",
                                });
                            }
                            objects.push(item);
                        }
                    }
                } else {
                    objects.push(Value::Object(map));
                }
            }
            Value::Array(items) if items.iter().all(Value::is_object) => objects.extend(items),
            other => {
                return Err(ManifestError::NotAnObject {
                    index,
                    found: match other {
                        Value::Array(_) => "list",
                        Value::String(_) => "string",
                        Value::Number(_) => "number",
                        Value::Bool(_) => "boolean",
                        _ => "null",
                    },
                });
            }
        }
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_multi_document_with_empty_documents() {
        let text = "---\napiVersion: v1\nkind: A\n---\n\n---\n# only a comment\n---\nkind: B\nmetadata:\n  name: b\n";
        let objects = parse_documents(text).unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0]["kind"], "A");
        assert_eq!(objects[1]["metadata"]["name"], "b");
    }

    #[test]
    fn json_single_stream_and_list() {
        assert_eq!(parse_documents(r#"{"kind":"A"}"#).unwrap().len(), 1);
        assert_eq!(
            parse_documents("{\"kind\":\"A\"}\n{\"kind\":\"B\"}")
                .unwrap()
                .len(),
            2
        );
        let list = json!({ "apiVersion": "v1", "kind": "List",
                           "items": [{ "kind": "GitRepository" }, { "kind": "GitRepository" }] });
        assert_eq!(parse_documents(&list.to_string()).unwrap().len(), 2);
        let typed = json!({ "kind": "GitRepositoryList", "items": [] });
        assert!(parse_documents(&typed.to_string()).unwrap().is_empty());
    }

    #[test]
    fn yaml_opening_with_a_flow_collection_is_read_as_yaml() {
        let objects = parse_documents("{kind: A, spec: {timeout: 5m}}\n---\nkind: B\n").unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0]["spec"]["timeout"], "5m");
        assert_eq!(objects[1]["kind"], "B");
        assert_eq!(parse_documents("{}\n---\n{}\n").unwrap().len(), 2);
        assert_eq!(parse_documents("[{kind: A}, {kind: B}]").unwrap().len(), 2);
    }

    #[test]
    fn bad_documents_name_their_position() {
        let err = parse_documents("kind: A\n---\nkind: [unclosed\n").unwrap_err();
        assert!(matches!(err, ManifestError::Yaml(_)), "{err}");
        assert!(err.to_string().contains("line 3"), "{err}");
        // Broken as JSON and as YAML: the JSON error, which names the document, is reported.
        let err = parse_documents("{\"kind\": \"A\"}\n{\"kind\": ").unwrap_err();
        assert!(matches!(err, ManifestError::Json { index: 2, .. }), "{err}");
        let err = parse_documents("just a string").unwrap_err();
        assert!(err.to_string().contains("document 1 is a string"), "{err}");
        let err = parse_documents("[1, 2]").unwrap_err();
        assert!(matches!(
            err,
            ManifestError::NotAnObject { found: "list", .. }
        ));
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let err = read_source(Path::new("/nonexistent/fluxgate.yaml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("reading /nonexistent/fluxgate.yaml"),
            "{err}"
        );
    }
}
