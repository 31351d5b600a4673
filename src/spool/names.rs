//! Spool entry names: which names can be lists (`src` values), how a name is shown in a log
//! line whatever bytes it holds, and the unique names `ringcrawl submit` gives lists.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;

/// Longest list name (bytes). The daemon's own files next to a list (`.NAME.claim`) must fit
/// in a file name, and `submit` keeps its names well under this.
pub(crate) const MAX_NAME_BYTES: usize = 200;
/// Bytes of the input's base name `submit` keeps (cut on a character boundary).
pub(crate) const MAX_BASE_BYTES: usize = 100;
/// Random bytes in a submitted name (written as twice as many hex digits): names nobody can
/// guess, so a submitter cannot probe for, or pre-empt, another one's lists.
pub(crate) const NAME_RANDOM_BYTES: usize = 12;

/// Why a name in `new/` or `cur/` cannot be a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadName {
    #[error("its name is not UTF-8")]
    NotUtf8,
    #[error("its name contains a control character")]
    Control,
    #[error("its name is longer than {MAX_NAME_BYTES} bytes")]
    TooLong,
}

/// `name` as a list name (the `src` of its records), or why it cannot be one. (Names
/// starting with `.` are the caller's business: producers' and the daemon's own files.)
pub(crate) fn list_name(name: &OsStr) -> Result<&str, BadName> {
    let s = name.to_str().ok_or(BadName::NotUtf8)?;
    if s.chars().any(char::is_control) {
        return Err(BadName::Control);
    }
    if s.len() > MAX_NAME_BYTES {
        return Err(BadName::TooLong);
    }
    Ok(s)
}

/// A name as one printable line: control characters, backslashes and bytes that are not
/// UTF-8 are escaped (`\n`, `\\`, `\xNN`, `\u{85}`), so a name cannot break or forge a log
/// line.
pub(crate) fn escape(name: &OsStr) -> String {
    let mut out = String::with_capacity(name.len());
    for chunk in name.as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() && (c as u32) < 0x80 => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// The name `submit` gives a list: the input's base name (leading dots dropped, control
/// characters replaced by `_`, at most [`MAX_BASE_BYTES`]; `list` when nothing is left), a
/// dot, and [`NAME_RANDOM_BYTES`] random bytes in hex.
pub(crate) fn submit_name(base: &str, random: &[u8; NAME_RANDOM_BYTES]) -> String {
    let base: String = base
        .trim_start_matches('.')
        .chars()
        .map(|c| if c.is_control() { '_' } else { c })
        .collect();
    let mut cut = base.len().min(MAX_BASE_BYTES);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    let base = if cut == 0 { "list" } else { &base[..cut] };
    let mut name = format!("{base}.");
    for b in random {
        let _ = write!(name, "{b:02x}");
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_names_are_utf8_without_controls_and_short() {
        assert_eq!(list_name(OsStr::new("urls.txt")), Ok("urls.txt"));
        assert_eq!(list_name(OsStr::new("é ü.txt")), Ok("é ü.txt"));
        assert_eq!(list_name(OsStr::new("a\nb")), Err(BadName::Control));
        assert_eq!(list_name(OsStr::new("a\u{7f}")), Err(BadName::Control));
        assert_eq!(list_name(OsStr::new("a\u{85}")), Err(BadName::Control));
        assert_eq!(
            list_name(OsStr::from_bytes(b"a\xff")),
            Err(BadName::NotUtf8)
        );
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(list_name(OsStr::new(&long)), Err(BadName::TooLong));
        assert!(list_name(OsStr::new(&long[1..])).is_ok());
    }

    #[test]
    fn escaped_names_are_one_printable_line() {
        assert_eq!(escape(OsStr::new("plain.txt")), "plain.txt");
        assert_eq!(
            escape(OsStr::from_bytes(b"a\nb\\c\td\x1b[31m\xffz\xc2\x85")),
            "a\\nb\\\\c\\td\\x1b[31m\\xffz\\u{85}"
        );
        assert_eq!(escape(OsStr::new("ünï")), "ünï");
    }

    #[test]
    fn submitted_names_keep_a_readable_base() {
        let r = [0xab; NAME_RANDOM_BYTES];
        let hex = "ab".repeat(NAME_RANDOM_BYTES);
        assert_eq!(submit_name("urls.txt", &r), format!("urls.txt.{hex}"));
        assert_eq!(submit_name("..hidden", &r), format!("hidden.{hex}"));
        assert_eq!(submit_name("", &r), format!("list.{hex}"));
        assert_eq!(submit_name("a\nb", &r), format!("a_b.{hex}"));
        let long = "é".repeat(MAX_BASE_BYTES);
        let name = submit_name(&long, &r);
        assert!(name.len() <= MAX_BASE_BYTES + 1 + 2 * NAME_RANDOM_BYTES);
        assert!(list_name(OsStr::new(&name)).is_ok());
    }
}
