//! String patterns compiled from Sigma values: case-insensitive by default,
//! `*`/`?` wildcards, escapes already resolved by rsigma-parser.
//!
//! Everything that can be decided at load time is: needles are lowercased
//! once, `*x*`/`x*`/`*x` become contains/prefix/suffix, and only patterns with
//! inner wildcards fall back to a glob matcher.

use memchr::memmem;
use rsigma_parser::{SigmaString, SpecialChar, StringPart};

/// One compiled string pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    kind: PatKind,
    /// `cased` modifier: compare bytes exactly.
    cased: bool,
}

#[derive(Debug, Clone)]
enum PatKind {
    /// `*` alone: any string.
    Any,
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(Box<memmem::Finder<'static>>, usize),
    /// Inner wildcards: literal runs and wildcards, matched by backtracking.
    Glob(Vec<Glob>),
}

#[derive(Debug, Clone)]
enum Glob {
    Lit(String),
    Star,
    One,
}

/// Lowercase a needle or haystack the way the matcher compares them.
fn fold(s: &str) -> String {
    if s.is_ascii() {
        s.to_ascii_lowercase()
    } else {
        s.to_lowercase()
    }
}

impl Pattern {
    /// Compile a Sigma string (already split into literal and wildcard parts).
    pub fn new(s: &SigmaString, cased: bool) -> Pattern {
        let norm = |t: &str| if cased { t.to_owned() } else { fold(t) };
        let mut parts: Vec<Glob> = Vec::new();
        for p in &s.parts {
            match p {
                StringPart::Plain(t) => match parts.last_mut() {
                    Some(Glob::Lit(prev)) => prev.push_str(&norm(t)),
                    _ => parts.push(Glob::Lit(norm(t))),
                },
                StringPart::Special(SpecialChar::WildcardMulti) => {
                    if !matches!(parts.last(), Some(Glob::Star)) {
                        parts.push(Glob::Star)
                    }
                }
                StringPart::Special(SpecialChar::WildcardSingle) => parts.push(Glob::One),
            }
        }
        let kind = match parts.as_slice() {
            [] => PatKind::Exact(String::new()),
            [Glob::Star] => PatKind::Any,
            [Glob::Lit(a)] => PatKind::Exact(a.clone()),
            [Glob::Lit(a), Glob::Star] => PatKind::Prefix(a.clone()),
            [Glob::Star, Glob::Lit(a)] => PatKind::Suffix(a.clone()),
            [Glob::Star, Glob::Lit(a), Glob::Star] => PatKind::Contains(
                Box::new(memmem::Finder::new(a.as_bytes()).into_owned()),
                a.len(),
            ),
            _ => PatKind::Glob(parts),
        };
        Pattern { kind, cased }
    }

    /// A case-insensitive pattern from Sigma text (`*`/`?` are wildcards).
    pub fn parse(s: &str) -> Pattern {
        Pattern::new(&SigmaString::new(s), false)
    }

    /// The exact (folded) string this pattern requires, if it is one.
    pub fn exact(&self) -> Option<&str> {
        match &self.kind {
            PatKind::Exact(s) if !self.cased => Some(s),
            _ => None,
        }
    }

    /// An ASCII literal (lowercased) that every matching text contains,
    /// ignoring ASCII case: the input of the substring prefilter. `None`
    /// when there is none, or when it is not ASCII (the prefilter folds
    /// ASCII only, so a non-ASCII needle could make it miss).
    pub(crate) fn prefilter_literal(&self) -> Option<String> {
        let lit = match &self.kind {
            PatKind::Any => return None,
            PatKind::Exact(n) | PatKind::Prefix(n) | PatKind::Suffix(n) => n.clone(),
            PatKind::Contains(f, _) => String::from_utf8(f.needle().to_vec()).ok()?,
            PatKind::Glob(parts) => parts
                .iter()
                .filter_map(|g| match g {
                    Glob::Lit(l) => Some(l.clone()),
                    _ => None,
                })
                .max_by_key(String::len)?,
        };
        (!lit.is_empty() && lit.is_ascii()).then(|| lit.to_ascii_lowercase())
    }

    /// Does `hay` match?
    pub fn matches(&self, hay: &str) -> bool {
        if self.cased || !needs_fold(hay) {
            return self.matches_folded(hay);
        }
        self.matches_folded(&fold(hay))
    }

    /// Match against a haystack that is already in the pattern's case.
    /// ASCII haystacks are compared without allocating.
    fn matches_folded(&self, hay: &str) -> bool {
        let ci = !self.cased;
        let h = hay.as_bytes();
        match &self.kind {
            PatKind::Any => true,
            PatKind::Exact(n) => eq(h, n.as_bytes(), ci),
            PatKind::Prefix(n) => h.len() >= n.len() && eq(&h[..n.len()], n.as_bytes(), ci),
            PatKind::Suffix(n) => {
                h.len() >= n.len() && eq(&h[h.len() - n.len()..], n.as_bytes(), ci)
            }
            PatKind::Contains(f, n) => {
                if h.len() < *n {
                    false
                } else if ci && h.iter().any(u8::is_ascii_uppercase) {
                    contains_ascii_ci(h, f.needle())
                } else {
                    f.find(h).is_some()
                }
            }
            PatKind::Glob(parts) => {
                if ci {
                    glob(parts, &hay.to_ascii_lowercase())
                } else {
                    glob(parts, hay)
                }
            }
        }
    }
}

/// Case-insensitive substring search of a lowercase needle, without
/// copying the haystack: candidates from memchr on the first byte in both
/// cases, then a case-folding comparison.
fn contains_ascii_ci(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let last_start = hay.len() - needle.len();
    let check =
        |i: usize| i <= last_start && hay[i + 1..i + needle.len()].eq_ignore_ascii_case(rest);
    if first.is_ascii_lowercase() {
        memchr::memchr2_iter(first, first.to_ascii_uppercase(), hay).any(check)
    } else {
        memchr::memchr_iter(first, hay).any(check)
    }
}

/// Non-ASCII text needs Unicode folding; ASCII is folded on the fly.
#[inline]
fn needs_fold(hay: &str) -> bool {
    !hay.is_ascii()
}

#[inline]
fn eq(a: &[u8], b: &[u8], ci: bool) -> bool {
    if ci {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// Wildcard match by backtracking over the last `*` (linear for the common
/// patterns, never exponential: one backtrack point at a time).
fn glob(parts: &[Glob], hay: &str) -> bool {
    fn go(parts: &[Glob], hay: &str) -> bool {
        match parts.split_first() {
            None => hay.is_empty(),
            Some((Glob::Lit(l), rest)) => hay.strip_prefix(l.as_str()).is_some_and(|h| go(rest, h)),
            Some((Glob::One, rest)) => {
                let mut c = hay.chars();
                c.next().is_some() && go(rest, c.as_str())
            }
            Some((Glob::Star, rest)) => {
                if rest.is_empty() {
                    return true;
                }
                // Try every position; a literal after the star anchors the
                // search to its occurrences.
                if let Some(Glob::Lit(l)) = rest.first() {
                    let mut from = 0;
                    while let Some(p) = hay[from..].find(l.as_str()) {
                        if go(rest, &hay[from + p..]) {
                            return true;
                        }
                        from += p + hay[from + p..].chars().next().map_or(1, char::len_utf8);
                    }
                    false
                } else {
                    hay.char_indices()
                        .map(|(i, _)| i)
                        .chain(std::iter::once(hay.len()))
                        .any(|i| go(rest, &hay[i..]))
                }
            }
        }
    }
    go(parts, hay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::new(&SigmaString::new(s), false)
    }

    #[test]
    fn table() {
        let cases: &[(&str, &str, bool)] = &[
            ("ConsoleLogin", "consolelogin", true),
            ("ConsoleLogin", "ConsoleLogin2", false),
            ("AccessDenied*", "AccessDeniedException", true),
            (
                "*UnauthorizedOperation",
                "Client.UnauthorizedOperation",
                true,
            ),
            ("*unauthorized*", "Client.UnauthorizedOperation", true),
            ("*", "", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("*.amazonaws.com", "iam.amazonaws.com", true),
            (r"lit\*star", "lit*star", true),
            (r"lit\*star", "litXstar", false),
            ("ÄRGER", "ärger", true),
            ("", "", true),
            ("", "x", false),
            // Wildcards span line breaks: `*x*` means the same as |contains.
            ("a*c", "ab\nc", true),
            ("*b*", "a\nb\nc", true),
            ("*boto3*", "Boto3/1.34 md/Botocore#1.34", true),
            ("*BOTOCORE#*", "Boto3/1.34 md/Botocore#1.34", true),
            ("*botocore#2*", "Boto3/1.34 md/Botocore#1.34", false),
            ("*3/1.34 MD*", "Boto3/1.34 md/Botocore#1.34", true),
            ("*Z*", "aaaZ", true),
            ("*zz*", "aaaZ", false),
        ];
        for (pat, hay, want) in cases {
            assert_eq!(p(pat).matches(hay), *want, "{pat} ~ {hay}");
        }
    }

    #[test]
    fn cased_compares_exactly() {
        let c = Pattern::new(&SigmaString::new("Root"), true);
        assert!(c.matches("Root"));
        assert!(!c.matches("root"));
    }

    #[test]
    fn exact_is_exposed_for_indexing() {
        assert_eq!(p("CreateAccessKey").exact(), Some("createaccesskey"));
        assert_eq!(p("Create*").exact(), None);
    }
}
