//! Shell-style globs (`*` and `?`) for region names, tag values and instance types.
//!
//! AutoSpotting matched these with Go's `filepath.Match`; users write `us-*`, `m5*.large` or
//! `sandbox*`, never character classes, so two wildcards are all that is needed. Pure: no I/O.

/// Whether `text` matches `pattern`, where `*` is any run of characters and `?` one character.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with one backtrack point: linear in practice, no recursion.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Splits a list written with commas, spaces or both, dropping empty items
/// (`",,a,,b"` and `"  a   b "` both give `[a, b]`, as AutoSpotting accepted).
pub fn split_list(text: &str) -> Vec<String> {
    text.split([',', ' ', '\t', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_and_question_mark_match_like_a_shell() {
        let cases = [
            ("*", "anything", true),
            ("us-*", "us-east-1", true),
            ("us*", "us-east-1", true),
            ("ap-*", "us-east-1", false),
            ("m5?.large", "m5a.large", true),
            ("m5?.large", "m5.large", false),
            ("m5*.large", "m5.large", true),
            ("m5*.large", "m5ad.large", true),
            ("m5*.large", "m5ad.xlarge", false),
            ("sandbox*", "sandbox-qa", true),
            ("t2.*", "t3.micro", false),
            ("us-east-1", "us-east-1", true),
            ("us-east-1", "us-east-1eu-west-1", false),
            ("*a*b*", "xxaxxbxx", true),
            ("", "", true),
            ("", "a", false),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(matches(pattern, text), want, "{pattern} vs {text}");
        }
    }

    #[test]
    fn lists_split_on_commas_and_spaces_and_drop_empty_items() {
        let want = vec!["c2.xlarge", "t2.medium", "c3.small"];
        for text in [
            "c2.xlarge,t2.medium,c3.small",
            "c2.xlarge t2.medium c3.small",
            ",,c2.xlarge,,,t2.medium,c3.small,,",
            "   c2.xlarge    t2.medium  c3.small  ",
            "c2.xlarge, t2.medium, c3.small",
        ] {
            assert_eq!(split_list(text), want, "{text:?}");
        }
        assert!(split_list("").is_empty());
    }
}
