//! The text codec: Elixir term syntax (`:notifications`, `{:room, 42}`).
//!
//! Parsing runs in two passes over the input, neither of which allocates:
//! the first checks the syntax of the whole term (so a syntax error anywhere
//! wins, as it would in Elixir) and counts the top-level tuple's elements;
//! the second validates in Hologram's order and feeds a [`Sink`].
//! Non-channel terms (lists, maps, floats, nested tuples) are parsed too,
//! only so that errors can quote them.

use core::fmt::{self, Write as _};

use crate::error::{ChannelError, Quote};
use crate::limits::{ChannelLimits, MAX_NESTING};
use crate::lit::{Lit, decode_escape};
use crate::sink::{LitValue, Sink, check_arity, check_atom, push_value};

// ---------------------------------------------------------------------------
// Canonical printing
// ---------------------------------------------------------------------------

fn is_identifier(mut chars: impl Iterator<Item = char>) -> bool {
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    let mut ended = false;
    for c in chars {
        if ended {
            return false;
        }
        if c == '?' || c == '!' {
            ended = true;
        } else if !(c.is_ascii_alphanumeric() || c == '_' || c == '@') {
            return false;
        }
    }
    true
}

fn is_bare_keyword(chars: &(impl Iterator<Item = char> + Clone)) -> bool {
    ["true", "false", "nil"]
        .iter()
        .any(|k| chars.clone().eq(k.chars()))
}

/// Writes an atom in canonical text form: `true`, `:room`, `:"room:42"`.
pub(crate) fn write_atom<W: fmt::Write>(
    w: &mut W,
    chars: impl Iterator<Item = char> + Clone,
) -> fmt::Result {
    if is_bare_keyword(&chars) {
        return chars.clone().try_for_each(|c| w.write_char(c));
    }
    w.write_char(':')?;
    if is_identifier(chars.clone()) {
        chars.clone().try_for_each(|c| w.write_char(c))
    } else {
        write_quoted(w, chars)
    }
}

/// Writes a string in canonical text form, with Elixir escapes.
pub(crate) fn write_quoted<W: fmt::Write>(
    w: &mut W,
    chars: impl Iterator<Item = char>,
) -> fmt::Result {
    w.write_char('"')?;
    let mut chars = chars.peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => w.write_str("\\\"")?,
            '\\' => w.write_str("\\\\")?,
            '\n' => w.write_str("\\n")?,
            '\r' => w.write_str("\\r")?,
            '\t' => w.write_str("\\t")?,
            '#' if chars.peek() == Some(&'{') => w.write_str("\\#")?,
            c if c < ' ' || c == '\u{7f}' => write!(w, "\\u{{{:X}}}", c as u32)?,
            c => w.write_char(c)?,
        }
    }
    w.write_char('"')
}

/// Writes one tuple value in canonical text form.
pub(crate) fn write_value<W: fmt::Write>(w: &mut W, value: LitValue<'_>) -> fmt::Result {
    match value {
        LitValue::Atom(a) => write_atom(w, a.chars()),
        LitValue::Int(i) => write!(w, "{i}"),
        LitValue::Str(s) => write_quoted(w, s.chars()),
    }
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Tok<'a> {
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    MapOpen,
    Comma,
    Arrow,
    /// `key:` inside a keyword list or map.
    KwKey(&'a str),
    Atom(Lit<'a>),
    /// An integer literal and its value, `None` when outside i64.
    Int(&'a str, Option<i64>),
    Float(&'a str),
    Str(Lit<'a>),
    End,
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

fn syntax(at: usize, problem: &'static str) -> ChannelError {
    ChannelError::Syntax { at, problem }
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Self { src, pos: 0 }
    }

    fn peek_byte(&self, ahead: usize) -> Option<u8> {
        self.src.as_bytes().get(self.pos + ahead).copied()
    }

    /// The next token and the byte range it spans.
    fn next(&mut self) -> Result<(Tok<'a>, usize, usize), ChannelError> {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek_byte(0) {
            self.pos += 1;
        }
        let start = self.pos;
        let Some(b) = self.peek_byte(0) else {
            return Ok((Tok::End, start, start));
        };
        let tok = match b {
            b'{' => self.punct(1, Tok::LBrace),
            b'}' => self.punct(1, Tok::RBrace),
            b'[' => self.punct(1, Tok::LBracket),
            b']' => self.punct(1, Tok::RBracket),
            b',' => self.punct(1, Tok::Comma),
            b'%' if self.peek_byte(1) == Some(b'{') => self.punct(2, Tok::MapOpen),
            b'=' if self.peek_byte(1) == Some(b'>') => self.punct(2, Tok::Arrow),
            b':' => self.atom()?,
            b'"' => {
                self.pos += 1;
                Tok::Str(self.quoted()?)
            }
            b'-' | b'0'..=b'9' => self.number()?,
            b if b.is_ascii_alphabetic() || b == b'_' => self.word()?,
            _ => {
                return Err(syntax(
                    start,
                    "unexpected character; a channel is an atom like :news or a tuple like {:room, 42}",
                ));
            }
        };
        Ok((tok, start, self.pos))
    }

    fn punct(&mut self, len: usize, tok: Tok<'a>) -> Tok<'a> {
        self.pos += len;
        tok
    }

    /// `[A-Za-z_][A-Za-z0-9_@]*[?!]?` starting at `pos`; returns its end.
    fn identifier_end(&self) -> usize {
        let bytes = self.src.as_bytes();
        let mut end = self.pos + 1;
        while end < bytes.len()
            && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] == b'@')
        {
            end += 1;
        }
        if end < bytes.len() && (bytes[end] == b'?' || bytes[end] == b'!') {
            end += 1;
        }
        end
    }

    fn atom(&mut self) -> Result<Tok<'a>, ChannelError> {
        self.pos += 1;
        match self.peek_byte(0) {
            Some(b'"') => {
                self.pos += 1;
                Ok(Tok::Atom(self.quoted()?))
            }
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => {
                let end = self.identifier_end();
                let name = &self.src[self.pos..end];
                self.pos = end;
                Ok(Tok::Atom(Lit::Plain(name)))
            }
            _ => Err(syntax(
                self.pos,
                "expected an atom name or a quoted atom after ':'",
            )),
        }
    }

    /// A bare word: `true`, `false`, `nil`, or a keyword key `name:`.
    fn word(&mut self) -> Result<Tok<'a>, ChannelError> {
        let start = self.pos;
        let end = self.identifier_end();
        let word = &self.src[start..end];
        let bytes = self.src.as_bytes();
        if bytes.get(end) == Some(&b':') && bytes.get(end + 1) != Some(&b':') {
            self.pos = end + 1;
            return Ok(Tok::KwKey(word));
        }
        if matches!(word, "true" | "false" | "nil") {
            self.pos = end;
            return Ok(Tok::Atom(Lit::Plain(word)));
        }
        Err(syntax(
            start,
            "unknown bare word; atoms are written :name (true, false and nil may be bare)",
        ))
    }

    /// The body of a quoted literal; `pos` is just past the opening quote.
    ///
    /// Scans bytes: `"`, `\\` and `#` are ASCII and never occur inside a
    /// multi-byte UTF-8 sequence, so every index stops on a char boundary.
    fn quoted(&mut self) -> Result<Lit<'a>, ChannelError> {
        let body_start = self.pos;
        let bytes = self.src.as_bytes();
        let mut escaped = false;
        let mut i = body_start;
        while i < bytes.len() {
            match bytes[i] {
                b'"' => {
                    let body = &self.src[body_start..i];
                    self.pos = i + 1;
                    return Ok(if escaped {
                        Lit::Escaped(body)
                    } else {
                        Lit::Plain(body)
                    });
                }
                b'\\' => {
                    escaped = true;
                    let mut rest = self.src[i + 1..].chars();
                    if decode_escape(&mut rest).is_none() {
                        return Err(syntax(
                            i,
                            "unknown or malformed escape; allowed: \\\" \\\\ \\# \\n \\t \\r \\s \\e \\a \\b \\f \\v \\0 \\uXXXX \\u{X..}",
                        ));
                    }
                    i = self.src.len() - rest.as_str().len();
                }
                b'#' if bytes.get(i + 1) == Some(&b'{') => {
                    return Err(syntax(
                        i,
                        "interpolation #{...} is not allowed; write \\#{ for a literal #{",
                    ));
                }
                _ => i += 1,
            }
        }
        Err(syntax(
            body_start - 1,
            "unterminated quoted literal; missing closing \"",
        ))
    }

    fn digits(&mut self) -> Result<(), ChannelError> {
        if !matches!(self.peek_byte(0), Some(b'0'..=b'9')) {
            return Err(syntax(self.pos, "expected a digit"));
        }
        while let Some(b) = self.peek_byte(0) {
            match b {
                b'0'..=b'9' => self.pos += 1,
                b'_' if matches!(self.peek_byte(1), Some(b'0'..=b'9')) => self.pos += 1,
                _ => break,
            }
        }
        Ok(())
    }

    fn number(&mut self) -> Result<Tok<'a>, ChannelError> {
        let start = self.pos;
        let negative = self.peek_byte(0) == Some(b'-');
        if negative {
            self.pos += 1;
        }
        self.digits()?;
        let int_end = self.pos;
        let mut float = false;
        if self.peek_byte(0) == Some(b'.') && matches!(self.peek_byte(1), Some(b'0'..=b'9')) {
            self.pos += 1;
            self.digits()?;
            float = true;
            if matches!(self.peek_byte(0), Some(b'e' | b'E')) {
                self.pos += 1;
                if matches!(self.peek_byte(0), Some(b'+' | b'-')) {
                    self.pos += 1;
                }
                self.digits()?;
            }
        }
        if matches!(self.peek_byte(0), Some(b) if b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            return Err(syntax(
                self.pos,
                "malformed number; integers are written like 42 or -7",
            ));
        }
        let text = &self.src[start..self.pos];
        if float {
            return Ok(Tok::Float(text));
        }
        // Accumulate negatively so that i64::MIN fits.
        let mut acc: Option<i64> = Some(0);
        for b in self.src[start..int_end].bytes().filter(u8::is_ascii_digit) {
            acc = acc
                .and_then(|a| a.checked_mul(10))
                .and_then(|a| a.checked_sub(i64::from(b - b'0')));
        }
        let value = if negative {
            acc
        } else {
            acc.and_then(i64::checked_neg)
        };
        Ok(Tok::Int(text, value))
    }
}

// ---------------------------------------------------------------------------
// Pass 1: syntax
// ---------------------------------------------------------------------------

/// What the top-level term is, once its syntax is known to be valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Scalar,
    Tuple(usize),
    Other,
}

/// Reads one whole term starting with `first`; returns its shape and end.
fn term(
    lex: &mut Lexer<'_>,
    first: (Tok<'_>, usize, usize),
    depth: usize,
) -> Result<(Shape, usize), ChannelError> {
    let (tok, start, end) = first;
    let close = match tok {
        Tok::Atom(_) | Tok::Int(..) | Tok::Float(_) | Tok::Str(_) => {
            return Ok((Shape::Scalar, end));
        }
        Tok::LBrace | Tok::MapOpen => Tok::RBrace,
        Tok::LBracket => Tok::RBracket,
        Tok::End => return Err(syntax(start, "unexpected end of input; expected a term")),
        _ => {
            return Err(syntax(
                start,
                "expected a term (atom, integer, string or tuple)",
            ));
        }
    };
    if depth >= MAX_NESTING {
        return Err(syntax(start, "terms nest too deeply (at most 32 levels)"));
    }
    let is_map = matches!(tok, Tok::MapOpen);
    let is_list = matches!(tok, Tok::LBracket);
    let mut count = 0;
    let mut next = lex.next()?;
    if core::mem::discriminant(&next.0) == core::mem::discriminant(&close) {
        let shape = if matches!(tok, Tok::LBrace) {
            Shape::Tuple(0)
        } else {
            Shape::Other
        };
        return Ok((shape, next.2));
    }
    loop {
        if let Tok::KwKey(_) = next.0 {
            if !(is_map || is_list) {
                return Err(syntax(
                    next.1,
                    "keyword syntax key: is only allowed in lists and maps",
                ));
            }
            let value = lex.next()?;
            term(lex, value, depth + 1)?;
        } else {
            term(lex, next, depth + 1)?;
            if is_map {
                let arrow = lex.next()?;
                if !matches!(arrow.0, Tok::Arrow) {
                    return Err(syntax(
                        arrow.1,
                        "expected => between a map key and its value",
                    ));
                }
                let value = lex.next()?;
                term(lex, value, depth + 1)?;
            }
        }
        count += 1;
        let sep = lex.next()?;
        match sep.0 {
            Tok::Comma => next = lex.next()?,
            t if core::mem::discriminant(&t) == core::mem::discriminant(&close) => {
                let shape = if matches!(tok, Tok::LBrace) {
                    Shape::Tuple(count)
                } else {
                    Shape::Other
                };
                return Ok((shape, sep.2));
            }
            _ => return Err(syntax(sep.1, "expected ',' or a closing bracket")),
        }
    }
}

// ---------------------------------------------------------------------------
// Pass 2: validation in Hologram's order
// ---------------------------------------------------------------------------

/// Parses `src` as a channel and feeds it to `sink`.
pub(crate) fn parse<S: Sink>(
    src: &str,
    limits: &ChannelLimits,
    sink: &mut S,
) -> Result<(), ChannelError> {
    if let Some(result) = parse_flat(src, limits, sink) {
        return result;
    }
    parse_general(src, limits, sink)
}

/// Most values the single-pass fast path holds; longer tuples take the general path.
const FLAT_VALUES: usize = 16;

/// The common case in one pass: a bare atom, or a flat tuple of an atom tag
/// and in-range scalars. `None` hands anything else (every syntax or shape
/// error included) to [`parse_general`]; the checks that remain here run in
/// the same order as there, so both paths give the same errors.
fn parse_flat<S: Sink>(
    src: &str,
    limits: &ChannelLimits,
    sink: &mut S,
) -> Option<Result<(), ChannelError>> {
    let mut lex = Lexer::new(src);
    match lex.next().ok()?.0 {
        Tok::Atom(name) => {
            if !matches!(lex.next().ok()?.0, Tok::End) {
                return None;
            }
            return Some(check_atom(name).and_then(|()| sink.atom_channel(name)));
        }
        Tok::LBrace => {}
        _ => return None,
    }
    let Tok::Atom(tag) = lex.next().ok()?.0 else {
        return None;
    };
    let mut values: heapless::Vec<LitValue<'_>, FLAT_VALUES> = heapless::Vec::new();
    loop {
        match lex.next().ok()?.0 {
            Tok::Comma => {}
            Tok::RBrace if !values.is_empty() => break,
            _ => return None,
        }
        let value = match lex.next().ok()?.0 {
            Tok::Atom(a) => LitValue::Atom(a),
            Tok::Str(s) => LitValue::Str(s),
            Tok::Int(_, Some(i)) => LitValue::Int(i),
            _ => return None,
        };
        values.push(value).ok()?;
    }
    if !matches!(lex.next().ok()?.0, Tok::End) {
        return None;
    }
    Some((|| {
        check_atom(tag)?;
        check_arity(values.len(), limits)?;
        sink.tuple(tag, values.len())?;
        values.iter().try_for_each(|&v| push_value(sink, v, limits))
    })())
}

/// Two passes: the syntax of the whole input, then Hologram's checks.
fn parse_general<S: Sink>(
    src: &str,
    limits: &ChannelLimits,
    sink: &mut S,
) -> Result<(), ChannelError> {
    // Pass 1: the syntax of the whole input.
    let mut lex = Lexer::new(src);
    let first = lex.next()?;
    let (shape, term_end) = term(&mut lex, first, 0)?;
    let trailing = lex.next()?;
    if !matches!(trailing.0, Tok::End) {
        return Err(syntax(trailing.1, "unexpected input after the channel"));
    }
    let whole = || render(src, first.1, term_end);

    // Pass 2: validation, in Hologram's order.
    match (first.0, shape) {
        (Tok::Atom(name), _) => {
            check_atom(name)?;
            sink.atom_channel(name)
        }
        (Tok::Str(_), _) => Err(ChannelError::BareString { got: whole() }),
        (_, Shape::Tuple(size)) => {
            if size < 2 {
                return Err(ChannelError::TooFewElements {
                    size,
                    channel: whole(),
                });
            }
            let mut lex = Lexer::new(src);
            lex.pos = first.2;
            let tag = lex.next()?;
            let after_tag = lex.next()?;
            let Tok::Atom(tag_name) = tag.0 else {
                return Err(ChannelError::TagNotAtom { channel: whole() });
            };
            if !matches!(after_tag.0, Tok::Comma) {
                return Err(ChannelError::TagNotAtom { channel: whole() });
            }
            check_atom(tag_name)?;
            check_arity(size - 1, limits)?;
            sink.tuple(tag_name, size - 1)?;
            for _ in 1..size {
                let elem = lex.next()?;
                let value = match elem.0 {
                    Tok::Atom(a) => Some(LitValue::Atom(a)),
                    Tok::Str(s) => Some(LitValue::Str(s)),
                    Tok::Int(_, Some(i)) => Some(LitValue::Int(i)),
                    Tok::Int(text, None) => {
                        return Err(ChannelError::IntegerOutOfRange {
                            literal: Quote::from_fmt(format_args!("{}", Digits(text))),
                        });
                    }
                    _ => None,
                };
                if let Some(v) = value {
                    push_value(sink, v, limits)?;
                } else {
                    let (_, elem_end) = term(&mut lex, elem, 1)?;
                    return Err(ChannelError::NotPrimitive {
                        element: render(src, elem.1, elem_end),
                        channel: whole(),
                    });
                }
                // The separator (',' or '}'), already checked by pass 1.
                lex.next()?;
            }
            Ok(())
        }
        _ => Err(ChannelError::NotAChannel { got: whole() }),
    }
}

/// An integer literal without its `_` separators.
struct Digits<'a>(&'a str);

impl fmt::Display for Digits<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0
            .chars()
            .filter(|&c| c != '_')
            .try_for_each(|c| f.write_char(c))
    }
}

/// Quotes `src[start..end]` re-printed canonically, like Elixir's `inspect`.
fn render(src: &str, start: usize, end: usize) -> Quote {
    Quote::from_fmt(format_args!("{}", Rendered { src, start, end }))
}

struct Rendered<'a> {
    src: &'a str,
    start: usize,
    end: usize,
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lex = Lexer::new(self.src);
        lex.pos = self.start;
        while lex.pos < self.end {
            let Ok((tok, _, _)) = lex.next() else {
                return Ok(());
            };
            match tok {
                Tok::LBrace => f.write_char('{')?,
                Tok::RBrace => f.write_char('}')?,
                Tok::LBracket => f.write_char('[')?,
                Tok::RBracket => f.write_char(']')?,
                Tok::MapOpen => f.write_str("%{")?,
                Tok::Comma => f.write_str(", ")?,
                Tok::Arrow => f.write_str(" => ")?,
                Tok::KwKey(k) => write!(f, "{k}: ")?,
                Tok::Atom(a) => write_atom(f, a.chars())?,
                Tok::Int(_, Some(i)) => write!(f, "{i}")?,
                Tok::Int(text, None) => write!(f, "{}", Digits(text))?,
                Tok::Float(text) => f.write_str(text)?,
                Tok::Str(s) => write_quoted(f, s.chars())?,
                Tok::End => return Ok(()),
            }
        }
        Ok(())
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use proptest::prelude::*;

    use super::{parse_flat, parse_general};
    use crate::ChannelLimits;
    use crate::channel::Builder;

    fn both(
        src: &str,
    ) -> Option<(
        Result<crate::Channel, crate::ChannelError>,
        Result<crate::Channel, crate::ChannelError>,
    )> {
        let limits = ChannelLimits::DEFAULT;
        let mut fast = Builder::default();
        let fast = parse_flat(src, &limits, &mut fast)?.map(|()| fast.finish());
        let mut general = Builder::default();
        let general = parse_general(src, &limits, &mut general).map(|()| general.finish());
        Some((fast, general))
    }

    #[test]
    fn the_fast_path_takes_the_common_shapes() {
        for src in [
            ":news",
            "{:room, 42}",
            "{:doc, \"abc-123\", \"v2\"}",
            "{:t, :a, nil, -1}",
        ] {
            let (fast, general) = both(src).expect(src);
            assert_eq!(fast, general, "{src}");
        }
        for src in [
            "{:a}",
            "{:a, [1]}",
            "\"s\"",
            "{:a, 1,}",
            "{:a, 99999999999999999999}",
        ] {
            assert!(both(src).is_none(), "{src} should fall back");
        }
    }

    proptest! {
        #[test]
        fn the_fast_path_agrees_with_the_general_path(src in "[{}:, \"a-c0-9\\\\\\-]{0,24}") {
            if let Some((fast, general)) = both(&src) {
                prop_assert_eq!(fast, general);
            }
        }

        #[test]
        fn the_fast_path_agrees_on_long_and_limited_tuples(n in 1usize..20, long in 250usize..260) {
            let src = alloc::format!("{{:t{}, \"{}\"}}", ", 1".repeat(n), "x".repeat(long));
            if let Some((fast, general)) = both(&src) {
                prop_assert_eq!(fast, general);
            }
        }
    }
}
