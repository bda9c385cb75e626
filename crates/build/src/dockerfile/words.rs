//! Words as BuildKit's Dockerfile frontend reads them.
//!
//! `split_words` cuts an instruction's arguments into raw words (ENV,
//! LABEL, ARG) at parse time; quotes and escapes stay in the words, since
//! what they mean depends on where the word is used.

/// Splits `text` on whitespace outside quotes, keeping quotes and escapes
/// in the words as written. The escape character takes the next character
/// along (even a quote or a space) outside single quotes; inside single
/// quotes it is an ordinary character. An escape at the very end is
/// dropped; an unterminated quote runs to the end.
pub fn split_words(text: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == escape && quote != Some('\'') {
            match chars.next() {
                Some(next) => {
                    word.push(c);
                    word.push(next);
                }
                None => quote = None,
            }
            continue;
        }
        match quote {
            None if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                continue;
            }
            None if c == '\'' || c == '"' => quote = Some(c),
            Some(q) if c == q => quote = None,
            _ => {}
        }
        word.push(c);
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting() {
        let cases: &[(&str, char, &[&str])] = &[
            ("", '\\', &[]),
            ("  a  b\tc ", '\\', &["a", "b", "c"]),
            (r#"k="a b" k2='c d'"#, '\\', &[r#"k="a b""#, "k2='c d'"]),
            (r"a\ b c", '\\', &[r"a\ b", "c"]),
            (r#"a\"b c"#, '\\', &[r#"a\"b"#, "c"]),
            (r#""a\" b" c"#, '\\', &[r#""a\" b""#, "c"]),
            (r"'a\' b", '\\', &[r"'a\'", "b"]),
            (r#"x="" y"#, '\\', &[r#"x="""#, "y"]),
            ("a \\", '\\', &["a"]),
            ("\"a b", '\\', &["\"a b"]),
            ("a` b c\\ d", '`', &["a` b", "c\\", "d"]),
            ("é=1 ü=\"2 3\"", '\\', &["é=1", "ü=\"2 3\""]),
        ];
        for (text, escape, want) in cases {
            assert_eq!(split_words(text, *escape), *want, "{text:?}");
        }
    }
}
