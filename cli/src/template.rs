//! Argument mode's command template: GNU parallel's replacement strings and its `sh`
//! quoting.
//!
//! Replacement strings (as in GNU parallel 20221122, whose output the tests compare
//! with):
//!
//! | string  | becomes                                                           |
//! |---------|-------------------------------------------------------------------|
//! | `{}`    | the arguments of the task, joined by spaces                       |
//! | `{.}`   | without the extension of its last part (`a/b.tar.gz` -> `a/b.tar`) |
//! | `{/}`   | the basename (everything after the last `/`)                      |
//! | `{//}`  | the directory (Perl's `dirname`: `a/b` -> `a`, `b` -> `.`)        |
//! | `{/.}`  | the basename without its extension                                |
//! | `{#}`   | the task number (from 1)                                          |
//! | `{%}`   | the worker's number, as `$STURDY_WORKER` (expanded by `sh`)       |
//! | `{n}`   | the n-th argument (input source, or column with `--colsep`); `{n.}`, `{n/}`, `{n//}`, `{n/.}` as above |
//!
//! A `{n}` past the last argument becomes the empty string. A template with none of
//! these gets the task's arguments appended, each quoted. Each replaced value is quoted
//! for `sh` as parallel quotes it by default ([`quote`]), so that a file name with
//! spaces, quotes or `$` reaches the command as one word; with `-q` the words of the
//! template themselves are quoted instead, after the values are put in raw (parallel's
//! `-q`: the template is a command and its arguments, not shell code).

/// What a replacement string takes of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Take {
    Whole,
    NoExt,
    Base,
    Dir,
    BaseNoExt,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Lit(String),
    /// `{}` (column `None`) or `{n}` (column `Some(n)`, from 1).
    Arg(Option<usize>, Take),
    Seq,
    Slot,
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Template {
    /// One part list per word with `-q`; one for the whole template otherwise.
    words: Vec<Vec<Part>>,
    quote_words: bool,
    /// Whether any replacement string occurs (else the arguments are appended).
    replaces: bool,
}

/// Quotes `s` for `sh` the way GNU parallel does by default: untouched when it holds
/// only `-_.+/` and ASCII letters and digits, `''` when empty, otherwise inside single
/// quotes with each run of single quotes as `'"'''"'` (for one quote: `'"'"'`).
pub(crate) fn quote(s: &str) -> String {
    if s.is_empty() {
        return "''".to_owned();
    }
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.+/".contains(&b))
    {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    let mut rest = s;
    while let Some(at) = rest.find('\'') {
        out.push_str(&rest[..at]);
        let run = rest[at..].bytes().take_while(|&b| b == b'\'').count();
        out.push_str("'\"");
        out.push_str(&rest[at..at + run]);
        out.push_str("\"'");
        rest = &rest[at + run..];
    }
    out.push_str(rest);
    out.push('\'');
    // Remove unneeded '' at the ends, as parallel does.
    let out = out.strip_prefix("''").map(str::to_owned).unwrap_or(out);
    out.strip_suffix("''").map(str::to_owned).unwrap_or(out)
}

/// `s` without its extension: a last `.` with no `/` after it, and what follows.
fn no_ext(s: &str) -> &str {
    match s.rfind('.') {
        Some(dot) if !s[dot..].contains('/') => &s[..dot],
        _ => s,
    }
}

/// Everything after the last `/`.
fn base(s: &str) -> &str {
    s.rfind('/').map_or(s, |i| &s[i + 1..])
}

/// Perl's `File::Basename::dirname`, which parallel's `{//}` uses.
fn dir(s: &str) -> String {
    let trimmed = s.trim_end_matches('/');
    if trimmed.is_empty() {
        return if s.is_empty() { ".".into() } else { "/".into() };
    }
    match trimmed.rfind('/') {
        None => ".".into(),
        Some(i) => {
            let d = trimmed[..i].trim_end_matches('/');
            if d.is_empty() { "/".into() } else { d.into() }
        }
    }
}

fn apply(take: Take, v: &str) -> String {
    match take {
        Take::Whole => v.to_owned(),
        Take::NoExt => no_ext(v).to_owned(),
        Take::Base => base(v).to_owned(),
        Take::Dir => dir(v),
        Take::BaseNoExt => no_ext(base(v)).to_owned(),
    }
}

/// Parses one replacement string at the start of `s` (which starts with `{`); returns
/// it and its length.
fn replacement(s: &str) -> Option<(Part, usize)> {
    let close = s.find('}')?;
    let inner = &s[1..close];
    let digits = inner.bytes().take_while(u8::is_ascii_digit).count();
    let (num, rest) = inner.split_at(digits);
    let part = match (num, rest) {
        ("", "#") => Part::Seq,
        ("", "%") => Part::Slot,
        (_, _) => {
            let take = match rest {
                "" => Take::Whole,
                "." => Take::NoExt,
                "/" => Take::Base,
                "//" => Take::Dir,
                "/." => Take::BaseNoExt,
                _ => return None,
            };
            let col = if num.is_empty() {
                None
            } else {
                match num.parse::<usize>() {
                    Ok(n) if n >= 1 => Some(n),
                    _ => return None,
                }
            };
            Part::Arg(col, take)
        }
    };
    Some((part, close + 1))
}

fn parse_parts(text: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('{') {
        lit.push_str(&rest[..at]);
        match replacement(&rest[at..]) {
            Some((part, len)) => {
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                parts.push(part);
                rest = &rest[at + len..];
            }
            None => {
                lit.push('{');
                rest = &rest[at + 1..];
            }
        }
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    parts
}

impl Template {
    /// Parses the words of a template (the command line's words before `:::`). Without
    /// `quote_words` they are joined by spaces into one piece of shell code.
    pub(crate) fn parse(words: &[String], quote_words: bool) -> Self {
        let words: Vec<Vec<Part>> = if quote_words {
            words.iter().map(|w| parse_parts(w)).collect()
        } else {
            vec![parse_parts(&words.join(" "))]
        };
        let replaces = words.iter().flatten().any(|p| !matches!(p, Part::Lit(_)));
        Self {
            words,
            quote_words,
            replaces,
        }
    }

    /// Whether the template is empty (then each task's arguments are its command).
    pub(crate) fn is_empty(&self) -> bool {
        self.words.iter().all(Vec::is_empty)
    }

    /// The command of task `seq` whose arguments are `args`.
    pub(crate) fn expand(&self, args: &[String], seq: u64) -> String {
        if self.is_empty() {
            return args.join(" ");
        }
        let value = |col: Option<usize>, take: Take, quoted: bool| -> String {
            let q = |s: String| if quoted { quote(&s) } else { s };
            match col {
                None => args
                    .iter()
                    .map(|a| q(apply(take, a)))
                    .collect::<Vec<_>>()
                    .join(" "),
                Some(n) => args
                    .get(n - 1)
                    .map_or_else(String::new, |a| q(apply(take, a))),
            }
        };
        let mut out: Vec<String> = Vec::with_capacity(self.words.len() + args.len());
        for word in &self.words {
            let mut s = String::new();
            for part in word {
                match part {
                    Part::Lit(l) => s.push_str(l),
                    Part::Arg(col, take) => s.push_str(&value(*col, *take, !self.quote_words)),
                    Part::Seq => s.push_str(&seq.to_string()),
                    Part::Slot => s.push_str("$STURDY_WORKER"),
                }
            }
            out.push(if self.quote_words { quote(&s) } else { s });
        }
        if !self.replaces {
            out.extend(args.iter().map(|a| quote(a)));
        }
        out.join(" ")
    }

    /// A tag (`--tagstring`): the template's replacement strings filled in, unquoted.
    pub(crate) fn fill(text: &str, args: &[String], seq: u64) -> String {
        let t = Self {
            words: vec![parse_parts(text)],
            quote_words: true,
            replaces: true,
        };
        let mut s = String::new();
        for part in &t.words[0] {
            match part {
                Part::Lit(l) => s.push_str(l),
                Part::Arg(None, take) => s.push_str(
                    &args
                        .iter()
                        .map(|a| apply(*take, a))
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
                Part::Arg(Some(n), take) => {
                    if let Some(a) = args.get(n - 1) {
                        s.push_str(&apply(*take, a));
                    }
                }
                Part::Seq => s.push_str(&seq.to_string()),
                Part::Slot => s.push_str("$STURDY_WORKER"),
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|&w| w.to_owned()).collect()
    }

    #[test]
    fn quoting_is_parallels() {
        // What `parallel --dry-run echo ::: ...` printed (GNU parallel 20221122).
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\"'\"'s'");
        assert_eq!(quote("x$y"), "'x$y'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("--"), "--");
        assert_eq!(quote("a/b.c"), "a/b.c");
        assert_eq!(quote("'x"), "\"'\"'x'");
        assert_eq!(quote("x''"), "'x'\"''\"");
    }

    #[test]
    fn path_replacements_match_parallel() {
        // parallel -k echo {#} {} {.} {/} {//} {/.} ::: a/b.tar.gz .bashrc b/ /x file.
        let t = Template::parse(&words(&["echo {#} {} {.} {/} {//} {/.}"]), false);
        let got: Vec<String> = ["a/b.tar.gz", ".bashrc", "b/", "/x", "file."]
            .iter()
            .enumerate()
            .map(|(i, a)| t.expand(&[(*a).to_owned()], i as u64 + 1))
            .collect();
        assert_eq!(
            got,
            vec![
                "echo 1 a/b.tar.gz a/b.tar b.tar.gz a b.tar",
                "echo 2 .bashrc '' .bashrc . ''",
                "echo 3 b/ b/ '' . ''",
                "echo 4 /x /x x / x",
                "echo 5 file. file file. . file",
            ]
        );
    }

    #[test]
    fn positional_and_appended_arguments() {
        let args = words(&["a.x", "q/r.y"]);
        let t = Template::parse(&words(&["echo {1.} {2/} {3}"]), false);
        assert_eq!(t.expand(&args, 1), "echo a r.y ");
        let t = Template::parse(&words(&["gzip", "-9"]), false);
        assert_eq!(t.expand(&words(&["a b", "c"]), 1), "gzip -9 'a b' c");
        let t = Template::parse(&[], false);
        assert!(t.is_empty());
        assert_eq!(t.expand(&words(&["ls -l"]), 1), "ls -l");
        let t = Template::parse(&words(&["echo {} {%} {x} {0} {"]), false);
        assert_eq!(
            t.expand(&words(&["a", "1"]), 7),
            "echo a 1 $STURDY_WORKER {x} {0} {"
        );
    }

    #[test]
    fn quote_option_quotes_the_words() {
        // parallel --dry-run -q echo '{}x y' ::: 'a b'
        let t = Template::parse(&words(&["echo", "{}x y"]), true);
        assert_eq!(t.expand(&words(&["a b"]), 1), "echo 'a bx y'");
        let t = Template::parse(&words(&["printf", "%s|"]), true);
        assert_eq!(t.expand(&words(&["a b"]), 1), "printf '%s|' 'a b'");
    }

    #[test]
    fn tagstrings_are_unquoted() {
        assert_eq!(
            Template::fill("{1}-x {#}", &words(&["a b", "c"]), 3),
            "a b-x 3"
        );
    }

    #[test]
    fn dirname_is_perls() {
        for (p, d) in [
            ("a/b", "a"),
            ("b", "."),
            ("/b", "/"),
            ("a/b/", "a"),
            ("/", "/"),
            ("a//b", "a"),
            ("", "."),
        ] {
            assert_eq!(dir(p), d, "{p}");
        }
    }
}
