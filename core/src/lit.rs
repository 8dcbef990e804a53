//! Literal atom names and strings as the decoders see them, before they are
//! copied anywhere: either plain text or the body of a quoted literal whose
//! escapes are decoded on demand.

use core::str::Chars;

/// An atom name or string value as found in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lit<'a> {
    /// Text that needs no decoding.
    Plain(&'a str),
    /// The body of a quoted literal that contains `\` escapes, already
    /// checked by the lexer.
    Escaped(&'a str),
}

impl<'a> Lit<'a> {
    /// The decoded characters.
    pub(crate) fn chars(self) -> LitChars<'a> {
        match self {
            Lit::Plain(s) => LitChars {
                inner: s.chars(),
                escaped: false,
            },
            Lit::Escaped(s) => LitChars {
                inner: s.chars(),
                escaped: true,
            },
        }
    }

    /// The text itself when it needs no decoding.
    pub(crate) fn as_plain(self) -> Option<&'a str> {
        match self {
            Lit::Plain(s) => Some(s),
            Lit::Escaped(_) => None,
        }
    }

    /// Length in bytes once decoded.
    pub(crate) fn decoded_len(self) -> usize {
        match self {
            Lit::Plain(s) => s.len(),
            Lit::Escaped(_) => self.chars().map(char::len_utf8).sum(),
        }
    }

    /// Length in characters once decoded.
    pub(crate) fn char_count(self) -> usize {
        match self {
            Lit::Plain(s) => s.chars().count(),
            Lit::Escaped(_) => self.chars().count(),
        }
    }
}

/// Iterator over the decoded characters of a [`Lit`].
#[derive(Clone)]
pub(crate) struct LitChars<'a> {
    inner: Chars<'a>,
    escaped: bool,
}

impl Iterator for LitChars<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        let c = self.inner.next()?;
        if !self.escaped || c != '\\' {
            return Some(c);
        }
        // The lexer checked every escape; a malformed one cannot reach here,
        // but decode it to U+FFFD rather than panic if it ever did.
        Some(decode_escape(&mut self.inner).unwrap_or(char::REPLACEMENT_CHARACTER))
    }
}

/// Decodes one escape sequence after its `\`. `None` when it is not one of
/// the escapes Elixir and Tidings share.
pub(crate) fn decode_escape(rest: &mut Chars<'_>) -> Option<char> {
    Some(match rest.next()? {
        '"' => '"',
        '\\' => '\\',
        '#' => '#',
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        's' => ' ',
        'e' => '\u{1b}',
        'a' => '\u{7}',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'v' => '\u{b}',
        '0' => '\0',
        'u' => {
            let mut probe = rest.clone();
            if probe.next()? == '{' {
                let mut code: u32 = 0;
                let mut digits = 0;
                loop {
                    let d = probe.next()?;
                    if d == '}' {
                        break;
                    }
                    code = code * 16 + d.to_digit(16)?;
                    digits += 1;
                    if digits > 6 {
                        return None;
                    }
                }
                if digits == 0 {
                    return None;
                }
                *rest = probe;
                char::from_u32(code)?
            } else {
                let mut code: u32 = 0;
                for _ in 0..4 {
                    code = code * 16 + rest.next()?.to_digit(16)?;
                }
                char::from_u32(code)?
            }
        }
        _ => return None,
    })
}
