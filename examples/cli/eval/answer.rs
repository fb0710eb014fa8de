//! Final-answer extraction and scoring for question-answering evals: pulls
//! the final number out of free-form model output (`\boxed{}`, GSM8K-style
//! `####`, "the answer is …", `=`, or the last number), normalises numbers
//! ("1,234.50" → "1234.5"), and compares against a gold answer.

/// Phrases, besides the "answer" forms, after which the first number is
/// taken as the answer; tried before the weak markers. Matched on the
/// ASCII-lowercased text.
const RESULT_PHRASES: &[&str] = &["result is", "result:"];

/// Weak markers: an equation's right-hand side. Used only when no strong
/// marker ("answer is", "answer:", "final answer", "result is") has a
/// number after it.
const WEAK_MARKERS: &[&str] = &["equals", "="];

/// Extracts the final numeric answer from model output and returns it
/// normalised like [`normalise_number`] (commas and "+" dropped, trailing
/// fractional zeros removed, "-0" → "0").
///
/// Priority, first hit wins:
/// 1. the last `\boxed{…}`: its last number (or its trimmed text when it
///    holds no number, e.g. `\boxed{B}`);
/// 2. the first number after the last `####`;
/// 3. the first number after a strong final-answer marker ("answer is",
///    "answer:", "answer =", "final answer", "result is", "result:";
///    markdown `**` and spaces may sit between "answer" and the ":"),
///    markers tried from the last one backwards until one has a number
///    after it; when that number opens an expression whose "=" is on the
///    same line ("Answer: 45 - 17 = 28"), the number after the last "=";
/// 4. the same for the weak markers "equals" and "=";
/// 5. the last number in the text.
///
/// A number is an optional sign, an optional "$", digits with optional
/// thousands groups ("1,234"), an optional decimal part, and an ignored
/// trailing "%". A "-" (or U+2212 "−") is a sign only when it directly
/// precedes the digits (or "$") and does not follow a letter, digit, ")" or
/// "_": in "45-17" the last number is 17, in "is -5" it is -5.
pub fn extract_answer(text: &str) -> Option<String> {
    if let Some(boxed) = boxed_answer(text) {
        return Some(boxed);
    }
    let numbers = scan_numbers(text);
    let first_after = |pos: usize| numbers.iter().find(|n| n.start >= pos).map(|n| n.value.clone());
    if let Some(pos) = text.rfind("####") {
        if let Some(v) = first_after(pos + 4) {
            return Some(v);
        }
    }
    let lower = text.to_ascii_lowercase();
    for &end in strong_marker_ends(&lower).iter().rev() {
        if let Some(i) = numbers.iter().position(|n| n.start >= end) {
            return Some(resolve_equation(text, &numbers, i));
        }
    }
    for &end in weak_marker_ends(&lower).iter().rev() {
        if let Some(v) = first_after(end) {
            return Some(v);
        }
    }
    numbers.last().map(|n| n.value.clone())
}

/// The value of `numbers[i]`, unless it opens an expression ("Answer: 45 -
/// 17 = 28"): when an arithmetic operator follows it and an "=" follows
/// later on the same line, the first number after the line's last "=".
fn resolve_equation(text: &str, numbers: &[Found], i: usize) -> String {
    let n = &numbers[i];
    let rest = &text[n.end..];
    let line = &rest[..rest.find('\n').unwrap_or(rest.len())];
    let opens_expression = line.trim_start().starts_with(['+', '-', '*', '/', '\u{d7}', '\u{f7}', '\u{b7}', '\u{2212}']);
    if let (true, Some(eq)) = (opens_expression, line.rfind('=')) {
        let eq_end = n.end + eq + 1;
        let line_end = n.end + line.len();
        if let Some(m) = numbers[i + 1..].iter().find(|m| m.start >= eq_end && m.start < line_end) {
            return m.value.clone();
        }
    }
    n.value.clone()
}

/// Normalises a whole string that is one number (gold answers): surrounding
/// whitespace, an optional sign ("+", "-", "−"), an optional "$", thousands
/// commas (in groups of three), a decimal part and a trailing "%" or "."
/// are accepted. Returns e.g. "1234.5" for " $1,234.50 ", "0" for "-0",
/// "0.5" for ".5", and `None` when the string is not a number.
pub fn normalise_number(s: &str) -> Option<String> {
    let mut t = s.trim();
    t = t.strip_suffix('%').unwrap_or(t).trim_end();
    let mut neg = false;
    if let Some(rest) = t.strip_prefix('-').or_else(|| t.strip_prefix('\u{2212}')) {
        neg = true;
        t = rest;
    } else if let Some(rest) = t.strip_prefix('+') {
        t = rest;
    }
    t = t.strip_prefix('$').unwrap_or(t);
    let (int_part, frac) = match t.split_once('.') {
        Some((i, f)) => (i, f),
        None => (t, ""),
    };
    if int_part.is_empty() && frac.is_empty() {
        return None;
    }
    if !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let int_digits = if int_part.contains(',') {
        let mut groups = int_part.split(',');
        let first = groups.next().unwrap_or("");
        let first_ok = (1..=3).contains(&first.len()) && first.bytes().all(|c| c.is_ascii_digit());
        if !first_ok || !groups.all(|g| g.len() == 3 && g.bytes().all(|c| c.is_ascii_digit())) {
            return None;
        }
        int_part.replace(',', "")
    } else if int_part.bytes().all(|c| c.is_ascii_digit()) {
        int_part.to_string()
    } else {
        return None;
    };
    Some(canonical(neg, &int_digits, frac))
}

/// Whether the answer extracted from `generated` matches `gold`.
///
/// Both numeric (gold through [`normalise_number`]): equal within a relative
/// tolerance of 1e-9 (so "72.0" matches "72"). Otherwise case-insensitive
/// comparison of trimmed strings; when no answer can be extracted (or the
/// gold is not a number), the whole trimmed output, less a final ".", is
/// compared with the gold too, so one-word text answers can match.
pub fn is_correct(generated: &str, gold: &str) -> bool {
    let extracted = extract_answer(generated);
    let gold_num = normalise_number(gold).and_then(|g| g.parse::<f64>().ok());
    if let (Some(e), Some(g)) = (extracted.as_deref().and_then(|e| e.parse::<f64>().ok()), gold_num) {
        return (e - g).abs() <= 1e-9 * e.abs().max(g.abs());
    }
    let gold_text = gold.trim().to_lowercase();
    if extracted.as_deref().is_some_and(|e| e.trim().to_lowercase() == gold_text) {
        return true;
    }
    if gold_num.is_none() || extracted.is_none() {
        let whole = generated.trim();
        let whole = whole.strip_suffix('.').unwrap_or(whole).trim();
        return !gold_text.is_empty() && whole.to_lowercase() == gold_text;
    }
    false
}

/// A number found in a text: byte range (sign and "$" included, "%" not)
/// and its normalised value.
struct Found {
    start: usize,
    end: usize,
    value: String,
}

/// All numbers in `text`, left to right.
fn scan_numbers(text: &str) -> Vec<Found> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let digits_start = i;
        let mut j = i;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let mut int_digits = text[i..j].to_string();
        // Thousands groups only after a first group of 1-3 digits.
        if j - i <= 3 {
            while j + 4 <= b.len() && b[j] == b',' && b[j + 1..j + 4].iter().all(u8::is_ascii_digit) && (j + 4 == b.len() || !b[j + 4].is_ascii_digit()) {
                int_digits.push_str(&text[j + 1..j + 4]);
                j += 4;
            }
        }
        let mut frac = "";
        if j + 1 < b.len() && b[j] == b'.' && b[j + 1].is_ascii_digit() {
            let f0 = j + 1;
            j = f0;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            frac = &text[f0..j];
        }
        let (start, neg) = sign_before(b, digits_start);
        out.push(Found { start, end: j, value: canonical(neg, &int_digits, frac) });
        i = j;
    }
    out
}

/// Where the number whose digits start at `digits` really starts (an
/// optional "$" and sign before it) and whether it is negative.
fn sign_before(b: &[u8], digits: usize) -> (usize, bool) {
    let mut k = digits;
    if k > 0 && b[k - 1] == b'$' {
        k -= 1;
    }
    let minus = "\u{2212}".as_bytes();
    let (sign_at, neg) = if k > 0 && (b[k - 1] == b'-' || b[k - 1] == b'+') {
        (k - 1, b[k - 1] == b'-')
    } else if k >= minus.len() && &b[k - minus.len()..k] == minus {
        (k - minus.len(), true)
    } else {
        return (k, false);
    };
    let joined = sign_at > 0 && {
        let p = b[sign_at - 1];
        p.is_ascii_alphanumeric() || p == b')' || p == b'_'
    };
    if joined {
        (k, false)
    } else {
        (sign_at, neg)
    }
}

/// Canonical form: no leading zeros in the integer part, no trailing zeros
/// in the fraction, no "." without a fraction, no sign on zero.
fn canonical(neg: bool, int_digits: &str, frac: &str) -> String {
    let int = int_digits.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let frac = frac.trim_end_matches('0');
    let zero = int == "0" && frac.is_empty();
    let mut s = String::new();
    if neg && !zero {
        s.push('-');
    }
    s.push_str(int);
    if !frac.is_empty() {
        s.push('.');
        s.push_str(frac);
    }
    s
}

/// The answer inside the last `\boxed{…}`, if any.
fn boxed_answer(text: &str) -> Option<String> {
    let open = text.rfind("\\boxed{")? + "\\boxed{".len();
    let mut depth = 1usize;
    let mut end = text.len();
    for (off, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    end = open + off;
                    break;
                }
            }
            _ => {}
        }
    }
    let inner = &text[open..end];
    if let Some(n) = scan_numbers(inner).pop() {
        return Some(n.value);
    }
    let trimmed = inner.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// Byte offsets just past each strong final-answer marker in `lower`
/// (ASCII-lowercased text), ascending.
fn strong_marker_ends(lower: &str) -> Vec<usize> {
    let b = lower.as_bytes();
    let skip = |mut j: usize| {
        while j < b.len() && matches!(b[j], b'*' | b'_' | b' ' | b'\t') {
            j += 1;
        }
        j
    };
    let mut ends = Vec::new();
    for (pos, _) in lower.match_indices("answer") {
        if pos > 0 && b[pos - 1].is_ascii_alphanumeric() {
            continue;
        }
        let after = pos + "answer".len();
        let j = skip(after);
        if j < b.len() && (b[j] == b':' || b[j] == b'=') {
            ends.push(j + 1);
        } else if lower[j..].starts_with("is") && b.get(j + 2).is_none_or(|c| !c.is_ascii_alphanumeric()) {
            ends.push(j + 2);
        } else if lower[..pos].trim_end_matches(['*', '_', ' ', '\t']).ends_with("final") {
            ends.push(after);
        }
    }
    for phrase in RESULT_PHRASES {
        ends.extend(lower.match_indices(phrase).map(|(p, _)| p + phrase.len()));
    }
    ends.sort_unstable();
    ends
}

/// Byte offsets just past each weak marker ("equals", "="), ascending.
fn weak_marker_ends(lower: &str) -> Vec<usize> {
    let mut ends: Vec<usize> = WEAK_MARKERS.iter().flat_map(|m| lower.match_indices(m).map(move |(p, _)| p + m.len())).collect();
    ends.sort_unstable();
    ends
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(s: &str) -> Option<String> {
        extract_answer(s)
    }

    #[test]
    fn hash_marker() {
        assert_eq!(ex("She has 3 + 4 = 7 apples.\n#### 72").as_deref(), Some("72"));
        assert_eq!(ex("#### 1,234 dollars, not 5").as_deref(), Some("1234"));
    }

    #[test]
    fn boxed_has_top_priority() {
        assert_eq!(ex("The answer is 41. \\boxed{42} then 43").as_deref(), Some("42"));
        assert_eq!(ex("#### 5 and $\\boxed{-3}$").as_deref(), Some("-3"));
        assert_eq!(ex("\\boxed{\\text{18 dollars}}").as_deref(), Some("18"));
        assert_eq!(ex("\\boxed{B}").as_deref(), Some("B"));
    }

    #[test]
    fn phrases() {
        assert_eq!(ex("First 5, then 7. The answer is 12.").as_deref(), Some("12"));
        assert_eq!(ex("I computed 5 then 7. **Answer**: 12 apples (5+7)").as_deref(), Some("12"));
        assert_eq!(ex("Final answer: **42**").as_deref(), Some("42"));
        assert_eq!(ex("The final answer 9").as_deref(), Some("9"));
        assert_eq!(ex("So the result is -5").as_deref(), Some("-5"));
        // A strong marker beats a later "=".
        assert_eq!(ex("Answer: 33\n\nCheck: 7 * 3 = 21").as_deref(), Some("33"));
        // The number opens an equation: its result is taken.
        assert_eq!(ex("Answer: 45 - 17 = 28").as_deref(), Some("28"));
        assert_eq!(ex("The answer is 12 + 7 * 3 = 33.\nThen 5").as_deref(), Some("33"));
        assert_eq!(ex("The answer is 28 (45 - 17 = 28), not 30").as_deref(), Some("28"));
        assert_eq!(ex("The answer is 4 + 4\nso = 9").as_deref(), Some("4"));
        // No number after the last marker: the earlier one is used.
        assert_eq!(ex("The answer is 8. I hope that answer is right.").as_deref(), Some("8"));
    }

    #[test]
    fn weak_markers_and_last_number() {
        assert_eq!(ex("12 + 7 * 3 = 12 + 21 = 33").as_deref(), Some("33"));
        assert_eq!(ex("ten times two equals 20, so that's it").as_deref(), Some("20"));
        assert_eq!(ex("We get 3 apples, then 15 apples").as_deref(), Some("15"));
        // "Answer with" is not a marker.
        assert_eq!(ex("Answer with the number only. 12").as_deref(), Some("12"));
        assert_eq!(ex("no digits here"), None);
        assert_eq!(ex(""), None);
    }

    #[test]
    fn signs_and_hyphens() {
        assert_eq!(ex("What is 45-17").as_deref(), Some("17"));
        assert_eq!(ex("it is -5").as_deref(), Some("-5"));
        assert_eq!(ex("x=-5").as_deref(), Some("-5"));
        assert_eq!(ex("well-5").as_deref(), Some("5"));
        assert_eq!(ex("45 - 17").as_deref(), Some("17"));
        assert_eq!(ex("it is \u{2212}3").as_deref(), Some("-3"));
        assert_eq!(ex("(-8)").as_deref(), Some("-8"));
        assert_eq!(ex("+7").as_deref(), Some("7"));
        assert_eq!(ex("-$12.50 owed").as_deref(), Some("-12.5"));
    }

    #[test]
    fn number_formats() {
        assert_eq!(ex("costs $1,234.50").as_deref(), Some("1234.5"));
        assert_eq!(ex("about 12.00").as_deref(), Some("12"));
        assert_eq!(ex("-0").as_deref(), Some("0"));
        assert_eq!(ex("growth of 50%").as_deref(), Some("50"));
        assert_eq!(ex("items 1,2,3").as_deref(), Some("3"));
        assert_eq!(ex("1,234,567 people").as_deref(), Some("1234567"));
        assert_eq!(ex("version 007").as_deref(), Some("7"));
    }

    #[test]
    fn normalise_gold() {
        assert_eq!(normalise_number(" $1,234.50 ").as_deref(), Some("1234.5"));
        assert_eq!(normalise_number("72").as_deref(), Some("72"));
        assert_eq!(normalise_number("+3.0").as_deref(), Some("3"));
        assert_eq!(normalise_number("-0.00").as_deref(), Some("0"));
        assert_eq!(normalise_number("-17").as_deref(), Some("-17"));
        assert_eq!(normalise_number("25%").as_deref(), Some("25"));
        assert_eq!(normalise_number(".5").as_deref(), Some("0.5"));
        assert_eq!(normalise_number("72.").as_deref(), Some("72"));
        assert_eq!(normalise_number("1,23"), None);
        assert_eq!(normalise_number("Paris"), None);
        assert_eq!(normalise_number(""), None);
        assert_eq!(normalise_number("-"), None);
        assert_eq!(normalise_number("1.2.3"), None);
    }

    #[test]
    fn correctness() {
        assert!(is_correct("The answer is 72.", "72"));
        assert!(is_correct("#### 72.0", "72"));
        assert!(is_correct("Answer: 1,234", "1,234"));
        assert!(is_correct("Answer: 1234", "1,234"));
        assert!(is_correct("so -5", "-5"));
        assert!(!is_correct("The answer is 71.", "72"));
        assert!(!is_correct("I don't know", "72"));
        assert!(is_correct("\\boxed{Paris}", "paris"));
        assert!(is_correct("Paris.", " Paris "));
        assert!(!is_correct("London", "Paris"));
        assert!(is_correct("0.1 + 0.2 = 0.30000000000000004", "0.3"));
    }
}
