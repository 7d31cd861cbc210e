//! Keeping user-supplied text short in messages: hostile inputs can be megabytes long.

use std::borrow::Cow;

/// `text` cut to at most `max` characters, with `…` marking the cut.
pub fn clip(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        Some((cut, _)) => Cow::Owned(format!("{}…", &text[..cut])),
        None => Cow::Borrowed(text),
    }
}

/// A clipped, quoted and escaped rendering of user input for warnings and errors.
pub fn quote(text: &str) -> String {
    format!("{:?}", clip(text, 80))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_on_character_boundaries() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "abc…");
        assert_eq!(clip("ééé", 2), "éé…");
        assert_eq!(quote("a\"b\n"), r#""a\"b\n""#);
        assert_eq!(quote(&"x".repeat(100_000)).chars().count(), 80 + 3);
    }
}
