//! Keeping text that fluxgate passes on (warnings, Event notes, error answers) within the limits
//! of whoever reads it, cut at character boundaries.

use std::borrow::Cow;

use time::OffsetDateTime;

/// RFC 3339 in UTC at whole seconds: fluxgate's time stamps on objects and the token it writes
/// into Flux's `requestedAt`.
pub fn rfc3339_seconds(now: OffsetDateTime) -> String {
    let utc = now.to_offset(time::UtcOffset::UTC);
    let (y, mo, d) = (utc.year(), u8::from(utc.month()), utc.day());
    let (h, mi, s) = (utc.hour(), utc.minute(), utc.second());
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `text` if it fits in `limit` bytes; otherwise its start and `...`, `limit` bytes at most.
pub fn fit(text: &str, limit: usize) -> Cow<'_, str> {
    if text.len() <= limit {
        return text.into();
    }
    let cut = floor_boundary(text, limit.saturating_sub(3));
    format!("{}...", &text[..cut]).into()
}

/// Cuts the middle out of a long message, keeping its first `head` bytes (what went wrong) and
/// its last `tail` bytes (where: serde's line and column).
pub fn shorten_middle(message: &str, head: usize, tail: usize) -> Cow<'_, str> {
    if message.len() <= head + tail {
        return message.into();
    }
    let head = floor_boundary(message, head);
    let mut start = message.len() - tail;
    while !message.is_char_boundary(start) {
        start += 1;
    }
    format!("{}…{}", &message[..head], &message[start..]).into()
}

fn floor_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_short_text_and_cuts_long_text_within_the_limit() {
        assert_eq!(fit("short", 10), "short");
        assert_eq!(fit("abcdefghijkl", 10), "abcdefg...");
        let cut = fit("ééééééé", 8);
        assert!(cut.len() <= 8, "{cut}");
        assert!(cut.ends_with("..."));
        assert_eq!(fit("", 0), "");
    }

    #[test]
    fn shorten_middle_keeps_both_ends() {
        assert_eq!(shorten_middle("abcdef", 3, 3), "abcdef");
        assert_eq!(shorten_middle("abcdefgh", 2, 2), "ab…gh");
        let s = shorten_middle("ééééééééé", 3, 3);
        assert!(s.starts_with('é') && s.ends_with('é'), "{s}");
    }
}
