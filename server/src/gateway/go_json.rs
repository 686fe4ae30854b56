//! The first syntax error of a JSON text in the words of Go's `encoding/json` scanner, which
//! etcd's gateway returns for a malformed body (`invalid character 'b' looking for beginning
//! of object key string`). Pure; iterative with an explicit bounded stack.

/// Go's scanner refuses nesting deeper than this.
const MAX_DEPTH: usize = 10_000;

#[derive(Clone, Copy)]
enum State {
    Value,
    ValueOrEnd,
    KeyOrEnd,
    Key,
    Colon,
    AfterPair,
    AfterElem,
}

/// Go's message for the first syntax error of `input`'s first JSON value, or `None` when
/// that value is well formed.
pub fn syntax_error(input: &[u8]) -> Option<String> {
    let mut stack: Vec<u8> = Vec::new();
    let mut state = State::Value;
    let mut i = 0;
    loop {
        while i < input.len() && matches!(input[i], b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
        }
        let Some(&c) = input.get(i) else {
            return Some("unexpected EOF".to_string());
        };
        let err = |what: &str| Some(format!("invalid character {} {what}", quote_char(input, i)));
        let value_done = match (state, c) {
            (State::ValueOrEnd, b']') | (State::KeyOrEnd, b'}') => {
                stack.pop();
                i += 1;
                true
            }
            (State::Value | State::ValueOrEnd, b'{' | b'[') => {
                if stack.len() >= MAX_DEPTH {
                    return Some("exceeded max depth".to_string());
                }
                stack.push(c);
                state = if c == b'{' {
                    State::KeyOrEnd
                } else {
                    State::ValueOrEnd
                };
                i += 1;
                false
            }
            (State::Value | State::ValueOrEnd, _) => {
                i = match scan_scalar(input, i) {
                    Ok(next) => next,
                    Err(e) => return Some(e),
                };
                true
            }
            (State::KeyOrEnd | State::Key, b'"') => {
                i = match scan_string(input, i) {
                    Ok(next) => next,
                    Err(e) => return Some(e),
                };
                state = State::Colon;
                false
            }
            (State::KeyOrEnd | State::Key, _) => {
                return err("looking for beginning of object key string");
            }
            (State::Colon, b':') => {
                state = State::Value;
                i += 1;
                false
            }
            (State::Colon, _) => return err("after object key"),
            (State::AfterPair, b',') | (State::AfterElem, b',') => {
                state = if matches!(state, State::AfterPair) {
                    State::Key
                } else {
                    State::Value
                };
                i += 1;
                false
            }
            (State::AfterPair, b'}') | (State::AfterElem, b']') => {
                stack.pop();
                i += 1;
                true
            }
            (State::AfterPair, _) => return err("after object key:value pair"),
            (State::AfterElem, _) => return err("after array element"),
        };
        if value_done {
            state = match stack.last() {
                None => return None,
                Some(b'{') => State::AfterPair,
                Some(_) => State::AfterElem,
            };
        }
    }
}

/// Scans a string, number or literal starting at `i`; returns the index after it.
fn scan_scalar(input: &[u8], i: usize) -> Result<usize, String> {
    match input[i] {
        b'"' => scan_string(input, i),
        b'-' | b'0'..=b'9' => scan_number(input, i),
        b't' => scan_literal(input, i, "true"),
        b'f' => scan_literal(input, i, "false"),
        b'n' => scan_literal(input, i, "null"),
        _ => Err(invalid(input, i, "looking for beginning of value")),
    }
}

fn scan_string(input: &[u8], mut i: usize) -> Result<usize, String> {
    i += 1;
    loop {
        let c = *input.get(i).ok_or_else(eof)?;
        match c {
            b'"' => return Ok(i + 1),
            b'\\' => {
                let e = *input.get(i + 1).ok_or_else(eof)?;
                match e {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        for k in 0..4 {
                            let h = *input.get(i + 2 + k).ok_or_else(eof)?;
                            if !h.is_ascii_hexdigit() {
                                return Err(invalid(
                                    input,
                                    i + 2 + k,
                                    "in \\u hexadecimal character escape",
                                ));
                            }
                        }
                        i += 6;
                    }
                    _ => return Err(invalid(input, i + 1, "in string escape code")),
                }
            }
            c if c < 0x20 => return Err(invalid(input, i, "in string literal")),
            _ => i += 1,
        }
    }
}

fn scan_number(input: &[u8], mut i: usize) -> Result<usize, String> {
    let digits = |input: &[u8], mut i: usize| {
        while input.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    if input[i] == b'-' {
        i += 1;
        match input.get(i) {
            None => return Err(eof()),
            Some(c) if !c.is_ascii_digit() => return Err(invalid(input, i, "in numeric literal")),
            _ => {}
        }
    }
    i = if input[i] == b'0' {
        i + 1
    } else {
        digits(input, i)
    };
    if input.get(i) == Some(&b'.') {
        i += 1;
        match input.get(i) {
            None => return Err(eof()),
            Some(c) if !c.is_ascii_digit() => {
                return Err(invalid(input, i, "after decimal point in numeric literal"));
            }
            _ => i = digits(input, i),
        }
    }
    if matches!(input.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(input.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        match input.get(i) {
            None => return Err(eof()),
            Some(c) if !c.is_ascii_digit() => {
                return Err(invalid(input, i, "in exponent of numeric literal"));
            }
            _ => i = digits(input, i),
        }
    }
    Ok(i)
}

fn scan_literal(input: &[u8], i: usize, word: &str) -> Result<usize, String> {
    for (k, want) in word.bytes().enumerate().skip(1) {
        match input.get(i + k) {
            None => return Err(eof()),
            Some(&c) if c != want => {
                let what = format!("in literal {word} (expecting '{}')", want as char);
                return Err(invalid(input, i + k, &what));
            }
            _ => {}
        }
    }
    Ok(i + word.len())
}

fn eof() -> String {
    "unexpected EOF".to_string()
}

fn invalid(input: &[u8], i: usize, what: &str) -> String {
    format!("invalid character {} {what}", quote_char(input, i))
}

/// Go's `quoteChar`: the character in single quotes, escaped as `strconv.Quote` does.
fn quote_char(input: &[u8], i: usize) -> String {
    let c = std::str::from_utf8(&input[i..])
        .ok()
        .or_else(|| {
            let end = (i + 4).min(input.len());
            (i + 1..=end).find_map(|e| std::str::from_utf8(&input[i..e]).ok())
        })
        .and_then(|s| s.chars().next())
        .unwrap_or('\u{FFFD}');
    match c {
        '\'' => "'\\''".to_string(),
        '"' => "'\"'".to_string(),
        '\n' => "'\\n'".to_string(),
        '\r' => "'\\r'".to_string(),
        '\t' => "'\\t'".to_string(),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => format!("'\\x{:02x}'", c as u32),
        c => format!("'{c}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::syntax_error;

    /// Messages measured from etcd 3.4.23's gateway (Go 1.17's encoding/json).
    #[test]
    fn messages_are_go_s() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "{bad",
                Some("invalid character 'b' looking for beginning of object key string"),
            ),
            (
                r#"{"key":"Zm9v",}"#,
                Some("invalid character '}' looking for beginning of object key string"),
            ),
            (
                r#"{"key" "x"}"#,
                Some("invalid character '\"' after object key"),
            ),
            ("nul", Some("unexpected EOF")),
            (r#"{"key":"Zm9v""#, Some("unexpected EOF")),
            (
                r#"{"a":1x}"#,
                Some("invalid character 'x' after object key:value pair"),
            ),
            (
                r#"{"a":[1 2]}"#,
                Some("invalid character '2' after array element"),
            ),
            (
                r#"{"a":tru}"#,
                Some("invalid character '}' in literal true (expecting 'e')"),
            ),
            (
                r#"{"a":-x}"#,
                Some("invalid character 'x' in numeric literal"),
            ),
            (
                r#"{"a":"\q"}"#,
                Some("invalid character 'q' in string escape code"),
            ),
            (
                r#"{"a":@}"#,
                Some("invalid character '@' looking for beginning of value"),
            ),
            (r#"{"a":[{"b":null}], "c":1.5e3} trailing"#, None),
        ];
        for (input, want) in cases {
            assert_eq!(syntax_error(input.as_bytes()).as_deref(), *want, "{input}");
        }
    }
}
