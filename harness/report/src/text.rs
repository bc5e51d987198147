//! Making untrusted text (guest console output, titles derived from it) safe for each output.

use std::borrow::Cow;

/// Whether `c` may be shown as is in a terminal or an HTML page: no control characters except
/// newline and tab (an ESC could drive the terminal; HTML forbids most C0 controls), no
/// noncharacters.
fn is_displayable(c: char) -> bool {
    c == '\n' || c == '\t' || !(c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}')
}

/// Replaces every character that is not [displayable](is_displayable) with `replacement`.
pub(crate) fn replace_undisplayable(text: &str, replacement: char) -> Cow<'_, str> {
    if text.chars().all(is_displayable) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(
            text.chars()
                .map(|c| if is_displayable(c) { c } else { replacement })
                .collect(),
        )
    }
}

/// Whether `c` matches the `Char` production of XML 1.0.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Text that XML 1.0 can carry. quick-junit strips ANSI escape sequences and C0 controls; this
/// also drops what it leaves that XML still forbids (U+FFFE, U+FFFF).
pub(crate) fn xml_string(text: &str) -> quick_junit::XmlString {
    let stripped = quick_junit::XmlString::new(text).into_string();
    if stripped.chars().all(is_xml_char) {
        quick_junit::XmlString::new(stripped)
    } else {
        quick_junit::XmlString::new(
            stripped
                .chars()
                .filter(|&c| is_xml_char(c))
                .collect::<String>(),
        )
    }
}

/// `text` cut to at most `max_chars` characters, ending in `…` when cut.
pub(crate) fn truncate_chars(text: &str, max_chars: usize) -> Cow<'_, str> {
    if text.chars().count() <= max_chars {
        return Cow::Borrowed(text);
    }
    if max_chars == 0 {
        return Cow::Borrowed("");
    }
    let kept: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    Cow::Owned(format!("{kept}…"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_undisplayable_neutralises_terminal_escapes_but_keeps_newlines() {
        assert_eq!(
            replace_undisplayable("a\x1b[2Jb\nc\td\u{0}\u{85}\u{FFFF}", '?'),
            "a?[2Jb\nc\td???"
        );
    }

    #[test]
    fn xml_string_drops_noncharacters_and_controls() {
        let cleaned = xml_string("ok\u{FFFE}\u{FFFF}\u{1}\u{0}\x1b[31mred\x1b[0m\r\n");
        // quick-junit's ANSI stripper also drops carriage returns, which XML would only normalise.
        assert_eq!(cleaned.as_str(), "okred\n");
    }

    #[test]
    fn truncate_chars_counts_characters_not_bytes() {
        assert_eq!(truncate_chars("ééééé", 5), "ééééé");
        assert_eq!(truncate_chars("éééééé", 5), "éééé…");
        assert_eq!(truncate_chars("abc", 0), "");
    }
}
