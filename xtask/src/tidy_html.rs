//! The tidy rule that keeps HTML in templates: no string literal that holds an HTML tag may be an
//! argument of a string builder (`format!`, `write!`, `writeln!`, `format_args!`, `concat!`, `.push_str`)
//! in non-test Rust code. The portal's pages are maud templates, which escape every value; HTML glued
//! from strings is where an unescaped value slips in.
//!
//! The check reads the source as tokens (comments, strings, raw strings, char literals and lifetimes
//! told apart), so generics (`Vec<u8>`), comparisons (`a < b`) and a builder's name in a comment or a
//! string do not fire. A tag is `<` after a character that cannot end a Rust path, then a letter, `/`
//! or `!` (`<p>`, `</td>`, `<!doctype`), which a type inside a message (`Option<String>`) is not.

/// The builders whose string arguments may not hold HTML: macros called as `NAME!(`, and `.push_str(`.
const MACROS: &[&str] = &["format", "write", "writeln", "format_args", "concat"];

/// Where Rust source builds HTML from strings: the 1-based line of each builder whose arguments hold a
/// tag, and the builder's name. Everything from a `#[cfg(test)]` module on is left out (unit tests may
/// spell out the markup they expect).
pub(crate) fn html_builders(source: &str) -> Vec<(usize, &'static str)> {
    let code = test_module_start(source).map_or(source, |tests| &source[..tests]);
    let bytes = code.as_bytes();
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut found: Vec<(usize, &'static str)> = Vec::new();
    // Builders whose arguments are being read: (name, where it began, the bracket depth inside it).
    let mut open: Vec<(&'static str, usize, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i = code[i..].find('\n').map_or(bytes.len(), |end| i + end);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = code[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |end| i + 2 + end + 2);
            }
            b'"' => {
                let end = string_end(bytes, i + 1);
                if let Some(&(name, start, _)) = open.last()
                    && has_tag(&code[i + 1..end.saturating_sub(1).max(i + 1)])
                    && !found.contains(&(line_of(start), name))
                {
                    found.push((line_of(start), name));
                }
                i = end;
            }
            b'r' if raw_string_start(bytes, i).is_some() => {
                let (hashes, body) = raw_string_start(bytes, i).unwrap_or((0, i));
                let closing = format!("\"{}", "#".repeat(hashes));
                let end = code[body..]
                    .find(&closing)
                    .map_or(bytes.len(), |e| body + e);
                if let Some(&(name, start, _)) = open.last()
                    && has_tag(&code[body..end])
                    && !found.contains(&(line_of(start), name))
                {
                    found.push((line_of(start), name));
                }
                i = (end + closing.len()).min(bytes.len());
            }
            b'\'' => i = char_literal_end(bytes, i),
            b'(' | b'[' | b'{' => {
                depth += 1;
                i += 1;
            }
            b')' | b']' | b'}' => {
                if open.last().is_some_and(|&(_, _, inside)| inside == depth) {
                    open.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let word = &code[start..i];
                let after_bang = skip_spaces(bytes, i);
                let builder = if bytes.get(after_bang) == Some(&b'!') {
                    MACROS.iter().find(|m| **m == word).copied()
                } else if word == "push_str" && start > 0 && bytes[start - 1] == b'.' {
                    Some("push_str")
                } else {
                    None
                };
                if let Some(name) = builder {
                    let next = skip_spaces(bytes, after_bang + usize::from(name != "push_str"));
                    if matches!(bytes.get(next), Some(b'(' | b'[' | b'{')) {
                        open.push((name, start, depth + 1));
                    }
                }
            }
            _ => i += 1,
        }
    }
    found
}

/// The index just past the closing quote of a string whose body starts at `from`.
fn string_end(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// For `r"`, `r#"`, `br"`…: the number of `#` and where the body starts; `None` if `at` is an `r` of
/// an identifier.
fn raw_string_start(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    let before = at.checked_sub(1).map(|b| bytes[b]);
    let ident_before = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    match before {
        Some(b'b') if at >= 2 && ident_before(bytes[at - 2]) => return None,
        Some(b'b') => {}
        Some(b) if ident_before(b) => return None,
        _ => {}
    }
    let mut i = at + 1;
    while bytes.get(i) == Some(&b'#') {
        i += 1;
    }
    (bytes.get(i) == Some(&b'"')).then_some((i - at - 1, i + 1))
}

/// Past a char literal (`'x'`, `'\n'`, `'\u{..}'`), or past the quote of a lifetime (`'a`).
fn char_literal_end(bytes: &[u8], at: usize) -> usize {
    if bytes.get(at + 1) == Some(&b'\\') {
        let mut i = at + 2;
        while i < bytes.len() && bytes[i] != b'\'' {
            i += 1;
        }
        return i + 1;
    }
    // One character, which may take up to four bytes of UTF-8.
    (at + 2..=at + 5)
        .find(|&end| bytes.get(end) == Some(&b'\''))
        .map_or(at + 1, |end| end + 1)
}

fn skip_spaces(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// The elements whose tags the check knows: those of the portal's pages and the common rest. A
/// placeholder in angle brackets (`<redacted>`, `<len>`, `<PATH>`) names none of them.
const ELEMENTS: &[&str] = &[
    "a", "abbr", "article", "aside", "b", "body", "br", "button", "canvas", "caption", "code",
    "dd", "details", "dialog", "div", "dl", "dt", "em", "fieldset", "footer", "form", "h1", "h2",
    "h3", "h4", "h5", "h6", "head", "header", "hr", "html", "i", "iframe", "img", "input", "kbd",
    "label", "legend", "li", "link", "main", "meta", "nav", "noscript", "ol", "optgroup", "option",
    "output", "p", "pre", "progress", "q", "s", "script", "section", "select", "small", "span",
    "strong", "style", "sub", "summary", "sup", "svg", "table", "tbody", "td", "template",
    "textarea", "tfoot", "th", "thead", "time", "title", "tr", "u", "ul", "video",
];

/// Whether `text` holds an HTML tag: `<` not right after a path character (so not `Vec<u8>`), then
/// `!` (`<!doctype`, `<!--`) or a known element's name, maybe after `/`, ending at a space, `>` or `/`.
fn has_tag(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        let after_path =
            i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || matches!(bytes[i - 1], b'_' | b':'));
        if b != b'<' || after_path {
            return false;
        }
        let rest = &text[i + 1..];
        if rest.starts_with('!') {
            return true;
        }
        let name_at = usize::from(rest.starts_with('/'));
        let name: String = rest[name_at..]
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        let ends_well = rest[name_at + name.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_whitespace() || c == '>' || c == '/');
        ends_well && ELEMENTS.contains(&name.to_ascii_lowercase().as_str())
    })
}

/// Where the code ends and the unit tests begin: the first `#[cfg(test)]` that (after any further
/// attributes) opens a module.
fn test_module_start(source: &str) -> Option<usize> {
    source
        .match_indices("#[cfg(test)]")
        .map(|(at, _)| at)
        .find(|&at| {
            let mut rest = source[at + "#[cfg(test)]".len()..].trim_start();
            while rest.starts_with("#[") {
                rest = rest
                    .find(']')
                    .map_or("", |end| rest[end + 1..].trim_start());
            }
            rest.starts_with("mod ")
                || rest.starts_with("pub mod ")
                || rest.starts_with("pub(crate) mod ")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(source: &str, expect: &[(usize, &str)]) {
        assert_eq!(html_builders(source), expect, "{source}");
    }

    #[test]
    fn html_glued_from_strings_is_found() {
        // The portal's old style, each builder once.
        check(
            r##"fn page(name: &str) -> String {
    let mut out = String::new();
    out.push_str("<h1>");
    let _ = write!(out, "{}</h1>", escape(name));
    let _ = writeln!(out, r#"<P class="x">{name}</p>"#);
    format!(
        "<!doctype html>{out}"
    )
}
const NAV: &str = concat!("<nav>", "</nav>");
"##,
            &[
                (3, "push_str"),
                (4, "write"),
                (5, "writeln"),
                (6, "format"),
                (10, "concat"),
            ],
        );
    }

    #[test]
    fn generics_comparisons_comments_and_tests_are_not_html() {
        check(
            r##"//! Mentions format!("<p>") in a comment.
fn f<'a, T: Into<String>>(a: &'a str, n: usize) -> Vec<u8> {
    let lt = if n < 3 { '<' } else { '>' };
    let t = format!("expected Option<String> or Vec<u8>, got {n} < {}", a.len());
    let u = format!("{lt} {t}: a <= b, a << b, x <- y, <3, <redacted>, <PNG 2x2>, usage: x <setup | demo>");
    let v = "<p>not in a builder</p>";
    /* format!("<b>") */
    let s = "format!(\"<i>\")";
    String::new().push_str(&format!("{u}{v}{s}"));
    html! { p { (t) } }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    fn expected() -> String { format!("<td>{}</td>", 1) }
}
"##,
            &[],
        );
    }
}
