//! Text from the log made safe for a terminal. Session ids, tools, reasons and the agent's
//! words are whatever the agent sent: escape sequences in them could rewrite the screen
//! (hide a veto, fake a line), so control and bidirectional-override characters are shown
//! escaped (`\u{1b}`), never emitted.

use std::borrow::Cow;

/// Characters that change how a terminal shows what follows.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        // Bidi embeddings/overrides/isolates reorder the rest of the line.
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
        // Line and paragraph separators break lines in some terminals.
        || c == '\u{2028}'
        || c == '\u{2029}'
}

/// `s` with every unsafe character replaced by its `\u{..}` escape.
pub fn clean(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A stress value for a table cell.
pub fn stress(s: Option<f64>) -> String {
    s.map(|s| format!("{s:+.2}")).unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_terminal_controls() {
        assert_eq!(clean("plain"), "plain");
        assert_eq!(clean("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(clean("x\ny\r"), "x\\u{a}y\\u{d}");
        assert_eq!(clean("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(clean("ab\u{202e}cd"), "ab\\u{202e}cd");
    }
}
