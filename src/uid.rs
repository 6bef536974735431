//! A Kubernetes object's `metadata.uid`, held compactly: the exporter keeps one per
//! GitRepository (100 000 in a large cluster), and a breaker pass copies those of a host.

use std::fmt;

/// `metadata.uid`. The API server makes UUIDs, written in lowercase with hyphens; one in that
/// form is held in 16 bytes, inline, where its text took a 36-byte allocation. Anything else is
/// kept as its text. Either way it displays exactly as it was given, and two uids are equal when
/// their texts are.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uid(Repr);

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Repr {
    /// Ordered as its text is: the bytes in the order of their hex digits.
    Uuid([u8; 16]),
    Text(Box<str>),
}

/// Where the hyphens of a UUID's text are.
const HYPHENS: [usize; 4] = [8, 13, 18, 23];

impl Uid {
    pub fn new(text: &str) -> Self {
        Self(match parse_uuid(text) {
            Some(bytes) => Repr::Uuid(bytes),
            None => Repr::Text(text.into()),
        })
    }
}

/// The 16 bytes of a UUID in canonical form (36 characters, lowercase hex, hyphens at their
/// places); `None` for any other text, so that displaying the bytes gives the text back.
fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let text = text.as_bytes();
    if text.len() != 36 || HYPHENS.iter().any(|&i| text[i] != b'-') {
        return None;
    }
    let mut digits = text
        .iter()
        .enumerate()
        .filter(|(i, _)| !HYPHENS.contains(i))
        .map(|(_, &c)| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        });
    let mut bytes = [0u8; 16];
    for byte in &mut bytes {
        *byte = (digits.next()?? << 4) | digits.next()??;
    }
    Some(bytes)
}

impl From<&str> for Uid {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<String> for Uid {
    fn from(text: String) -> Self {
        Self::new(&text)
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Text(text) => f.write_str(text),
            Repr::Uuid(bytes) => {
                for (i, byte) in bytes.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

impl PartialEq<str> for Uid {
    fn eq(&self, other: &str) -> bool {
        match &self.0 {
            Repr::Text(text) => **text == *other,
            Repr::Uuid(bytes) => parse_uuid(other).is_some_and(|b| b == *bytes),
        }
    }
}

impl PartialEq<&str> for Uid {
    fn eq(&self, other: &&str) -> bool {
        self == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_uuid_is_held_in_sixteen_bytes_and_shown_as_given() {
        let text = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let uid = Uid::new(text);
        assert!(matches!(uid.0, Repr::Uuid(_)));
        assert_eq!(uid.to_string(), text);
        assert_eq!(uid, *text);
        assert!(std::mem::size_of::<Uid>() <= 24);
    }

    #[test]
    fn any_other_text_is_kept_as_it_is() {
        for text in [
            "u-1",
            "",
            "0F8FAD5B-D9CB-469F-A165-70867728950E",
            "0f8fad5bd9cb469fa16570867728950e",
            "0f8fad5b-d9cb-469f-a165-70867728950g",
            "0f8fad5b-d9cb-469f-a165-70867728950",
            "é0f8fad5b-d9cb-469f-a165-70867728950",
        ] {
            let uid = Uid::new(text);
            assert!(matches!(uid.0, Repr::Text(_)), "{text}");
            assert_eq!(uid.to_string(), text);
            assert_eq!(uid, *text);
        }
    }

    proptest! {
        #[test]
        fn equal_and_ordered_as_their_texts(
            a in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-fA-F-]{0,40}",
            b in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        ) {
            let (ua, ub) = (Uid::new(&a), Uid::new(&b));
            prop_assert_eq!(ua.to_string(), a.clone());
            prop_assert_eq!(ua == ub, a == b);
            prop_assert_eq!(ua == *b.as_str(), a == b);
            // UUIDs among themselves sort as their texts do.
            if matches!(ua.0, Repr::Uuid(_)) {
                prop_assert_eq!(ua.cmp(&ub), a.cmp(&b));
            }
        }
    }
}
