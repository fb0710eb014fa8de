//! Eval task sets: seeded synthetic arithmetic (three difficulty levels,
//! each item a pure function of (seed, level, index)), a seeded dev/test
//! split, a JSONL loader for question-answer files (GSM8K layout included),
//! built-in open-ended prompts, and a prompt-file loader.

use std::path::Path;

use serde_json::Value;

/// One question with its canonical final answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QaItem {
    /// Stable identifier, e.g. "arith-L2-0007" or "line-12".
    pub id: String,
    /// The full prompt text given to the model.
    pub question: String,
    /// Canonical final answer, e.g. "42" (compare with `answer::is_correct`).
    pub answer: String,
}

/// Suffix of every level 1-2 question.
pub const SUFFIX_EXPR: &str = " Answer with the number only.";
/// Suffix of every level 3 (word problem) question.
pub const SUFFIX_WORD: &str = " Give the final answer as a number.";

/// `n` synthetic arithmetic items at `level` (clamped to 1..=3), ids
/// "arith-L{level}-{index:04}". Item i depends only on (seed, level, i), so
/// the first k items of a larger set equal the set of size k.
///
/// * Level 1: one addition or subtraction of two 2-digit numbers
///   ("What is 45 - 17?"); results are never negative.
/// * Level 2: a 2-digit number times a 1-digit (2-9) or 2-digit (11-25)
///   multiplier, or a two-operation expression with the usual precedence
///   ("What is 12 + 7 * 3?", "What is (8 + 5) * 4?"); results are never
///   negative.
/// * Level 3: two- or three-step word problems from 12 templates with
///   names and objects; answers are non-negative integers.
///
/// Levels 1-2 end with [`SUFFIX_EXPR`], level 3 with [`SUFFIX_WORD`].
#[cfg(test)]
pub fn generate_arithmetic(n: usize, seed: u64, level: u32) -> Vec<QaItem> {
    let level = level.clamp(1, 3);
    (0..n).map(|i| arithmetic_item(seed, level, i)).collect()
}

/// `n` items cycling through `levels` (each clamped to 1..=3): item i has
/// level `levels[i % levels.len()]` and is the same item
/// `generate_arithmetic` would make at that level and index (id
/// "arith-L{level}-{i:04}"), so ids are unique and prefixes are stable.
/// No levels: no items.
pub fn generate_mixed(n: usize, seed: u64, levels: &[u32]) -> Vec<QaItem> {
    if levels.is_empty() {
        return Vec::new();
    }
    (0..n).map(|i| arithmetic_item(seed, levels[i % levels.len()].clamp(1, 3), i)).collect()
}

/// Splits `items` into (dev, test), keeping their order. An item goes to dev
/// when a hash of (seed, id), read as a uniform number in [0, 1), is below
/// `dev_fraction`; its side therefore depends on nothing else (not on the
/// other items, nor on their order). 0.0 puts everything in test, 1.0 in dev.
pub fn split_dev_test(items: &[QaItem], dev_fraction: f64, seed: u64) -> (Vec<QaItem>, Vec<QaItem>) {
    items.iter().cloned().partition(|it| {
        let h = mix64(mix64(seed) ^ fnv1a(it.id.as_bytes()));
        ((h >> 11) as f64 / (1u64 << 53) as f64) < dev_fraction
    })
}

/// Loads question-answer items from a JSONL file: one JSON object per
/// non-empty line.
///
/// * question: "question", else "problem", "input" or "prompt" (string);
/// * answer: "answer", else "target" or "output" (string or number); when
///   the text contains "####" (GSM8K), the part after the last "####",
///   trimmed, with commas removed; otherwise the trimmed text;
/// * id: "id" (string or number), else "line-N" (N counts from 1).
///
/// Errors name the line and what is missing; a file with no items is an
/// error.
pub fn load_qa_jsonl(path: &Path) -> Result<Vec<QaItem>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut items = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let line = raw.trim_start_matches('\u{feff}').trim();
        if line.is_empty() {
            continue;
        }
        let where_ = format!("{}: line {line_no}", path.display());
        let value: Value = serde_json::from_str(line).map_err(|e| format!("{where_}: invalid JSON: {e}"))?;
        let obj = value.as_object().ok_or_else(|| format!("{where_}: expected a JSON object"))?;
        let question = ["question", "problem", "input", "prompt"]
            .iter()
            .find_map(|k| obj.get(*k).and_then(Value::as_str))
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .ok_or_else(|| format!("{where_}: no question (a non-empty string \"question\", \"problem\", \"input\" or \"prompt\")"))?;
        let answer_raw = ["answer", "target", "output"]
            .iter()
            .find_map(|k| match obj.get(*k) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            })
            .ok_or_else(|| format!("{where_}: no answer (a string or number \"answer\", \"target\" or \"output\")"))?;
        let answer = match answer_raw.rfind("####") {
            Some(p) => answer_raw[p + 4..].trim().replace(',', ""),
            None => answer_raw.trim().to_string(),
        };
        if answer.is_empty() {
            return Err(format!("{where_}: the answer is empty"));
        }
        let id = match obj.get("id") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            Some(Value::Number(n)) => n.to_string(),
            _ => format!("line-{line_no}"),
        };
        items.push(QaItem { id, question: question.to_string(), answer });
    }
    if items.is_empty() {
        return Err(format!("{}: no items (empty file)", path.display()));
    }
    Ok(items)
}

/// Built-in open-ended prompts (explanations, stories, advice, descriptions,
/// how-tos) for repetition and diversity metrics; 30 single-line prompts.
pub fn builtin_open_prompts() -> Vec<String> {
    [
        "Explain how a refrigerator keeps food cold.",
        "Write a short story about a lighthouse keeper who finds a message in a bottle.",
        "Give some advice to someone starting their first job.",
        "Describe a busy market on a rainy morning.",
        "Explain how to bake a loaf of bread at home, step by step.",
        "Why is the sky blue? Explain it to a ten-year-old.",
        "Write a short story about a robot that learns to paint.",
        "What are some good ways to learn a new language as an adult?",
        "Describe the view from the top of a mountain at sunrise.",
        "Explain how vaccines train the immune system.",
        "How do I plant and care for a small vegetable garden?",
        "Write a letter from a cat to its owner about the new dog.",
        "Explain the difference between weather and climate.",
        "Give tips for staying focused while working from home.",
        "Describe an old library at night.",
        "Explain how a bicycle stays upright while it moves.",
        "Write a short story set on a train crossing a desert.",
        "How should someone prepare for a long hike?",
        "Explain how money moves when you pay with a bank card.",
        "Describe the taste and smell of a fresh cup of coffee.",
        "Explain why leaves change colour in autumn.",
        "Write a fable about a fox and a crow, with a moral at the end.",
        "What should I consider when adopting a pet?",
        "Explain how a search engine finds web pages.",
        "Describe a city street in the year 2100.",
        "How do you change a flat tyre on a car?",
        "Explain what causes the tides.",
        "Write a short story about two friends who get lost in a forest.",
        "Give advice on how to resolve a disagreement with a roommate.",
        "Explain how a computer stores a photograph.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Loads prompts from a file: plain text with one prompt per non-empty line
/// (trimmed), or JSONL where a line starting with "{" is an object whose
/// prompt is "prompt", else "question" or "text" (string). The two kinds
/// may be mixed. Errors name the line; a file with no prompts is an error.
pub fn load_prompts(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut prompts = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.trim_start_matches('\u{feff}').trim();
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('{') {
            prompts.push(line.to_string());
            continue;
        }
        let where_ = format!("{}: line {}", path.display(), idx + 1);
        let value: Value = serde_json::from_str(line).map_err(|e| format!("{where_}: invalid JSON: {e}"))?;
        let prompt = ["prompt", "question", "text"]
            .iter()
            .find_map(|k| value.get(*k).and_then(Value::as_str))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| format!("{where_}: no prompt (a non-empty string \"prompt\", \"question\" or \"text\")"))?;
        prompts.push(prompt.to_string());
    }
    if prompts.is_empty() {
        return Err(format!("{}: no prompts (empty file)", path.display()));
    }
    Ok(prompts)
}

fn arithmetic_item(seed: u64, level: u32, i: usize) -> QaItem {
    let mut rng = SplitMix64 { state: mix64(mix64(mix64(seed) ^ level as u64) ^ i as u64) };
    let (question, answer) = match level {
        1 => {
            let a = rng.range(10, 99);
            let b = rng.range(10, 99);
            render_expr(rng.range(0, 1) as usize, a, b, 0)
        }
        2 => {
            let form = rng.range(2, 7) as usize;
            let (a, b, c) = match form {
                2 => {
                    let a = rng.range(10, 99);
                    let m = if rng.range(0, 1) == 0 { rng.range(2, 9) } else { rng.range(11, 25) };
                    (a, m, 0)
                }
                3 => (rng.range(10, 99), rng.range(2, 20), rng.range(2, 9)),
                4 => {
                    let a = rng.range(10, 30);
                    let b = rng.range(2, 9);
                    (a, b, rng.range(10, (a * b).min(99)))
                }
                5 => {
                    let b = rng.range(2, 9);
                    let c = rng.range(2, 9);
                    (rng.range((b * c).max(10), 99), b, c)
                }
                6 => (rng.range(2, 20), rng.range(2, 20), rng.range(2, 9)),
                _ => {
                    let a = rng.range(10, 99);
                    let b = rng.range(10, 99);
                    (a, b, rng.range(10, (a + b).min(99)))
                }
            };
            render_expr(form, a, b, c)
        }
        _ => {
            let wp = draw_word_problem(&mut rng);
            render_word_problem(&wp)
        }
    };
    QaItem { id: format!("arith-L{level}-{i:04}"), question, answer: answer.to_string() }
}

/// Renders expression form `form` with operands a, b, c; returns the
/// question (with [`SUFFIX_EXPR`]) and its value. Forms: 0 a+b, 1 |a-b|
/// (larger first), 2 a*b, 3 a+b*c, 4 a*b-c, 5 a-b*c, 6 (a+b)*c, 7 a+b-c.
fn render_expr(form: usize, a: i64, b: i64, c: i64) -> (String, i64) {
    let (expr, value) = match form {
        0 => (format!("{a} + {b}"), a + b),
        1 => (format!("{} - {}", a.max(b), a.min(b)), (a - b).abs()),
        2 => (format!("{a} * {b}"), a * b),
        3 => (format!("{a} + {b} * {c}"), a + b * c),
        4 => (format!("{a} * {b} - {c}"), a * b - c),
        5 => (format!("{a} - {b} * {c}"), a - b * c),
        6 => (format!("({a} + {b}) * {c}"), (a + b) * c),
        _ => (format!("{a} + {b} - {c}"), a + b - c),
    };
    (format!("What is {expr}?{SUFFIX_EXPR}"), value)
}

/// Number of word-problem templates.
const N_TEMPLATES: usize = 12;

const PEOPLE: &[(&str, &str)] = &[
    ("Sam", "He"),
    ("Maya", "She"),
    ("Leo", "He"),
    ("Priya", "She"),
    ("Omar", "He"),
    ("Lena", "She"),
    ("Jonas", "He"),
    ("Aiko", "She"),
    ("Carlos", "He"),
    ("Fatima", "She"),
    ("Noah", "He"),
    ("Zoe", "She"),
];

const OBJECTS: &[&str] = &["apples", "oranges", "marbles", "stickers", "cookies", "pencils"];

/// A drawn word problem: template index, its numbers, a person and an object.
struct WordProblem {
    template: usize,
    v: [i64; 4],
    person: usize,
    object: usize,
}

fn draw_word_problem(rng: &mut SplitMix64) -> WordProblem {
    let template = rng.range(0, N_TEMPLATES as i64 - 1) as usize;
    let person = rng.range(0, PEOPLE.len() as i64 - 1) as usize;
    let object = rng.range(0, OBJECTS.len() as i64 - 1) as usize;
    let v = match template {
        0 => {
            let a = rng.range(5, 30);
            [a, rng.range(2, 5), rng.range(2, 8), rng.range(1, a)]
        }
        1 => {
            let a = rng.range(2, 8);
            let c = rng.range(6, 12);
            [a, c, rng.range(1, a * c - 1), 0]
        }
        2 => [rng.range(5, 30), rng.range(2, 7), rng.range(3, 40), 0],
        3 => {
            let friends = rng.range(2, 5);
            let k = rng.range(1, 4);
            [friends * k, rng.range(3, 12), friends, 0]
        }
        4 => {
            let c = rng.range(5, 30);
            [rng.range(3, 9), rng.range(20, 60), c, rng.range(1, c)]
        }
        5 => {
            let a = rng.range(8, 25);
            let b = rng.range(3, 8);
            let c = rng.range(5, 15);
            [a, b, c, rng.range(5, (a * b - c).min(30))]
        }
        6 => [rng.range(3, 20), rng.range(2, 10), rng.range(1, 6), 0],
        7 => {
            let a = rng.range(10, 50);
            [a, rng.range(2, a.min(15)), 0, 0]
        }
        8 => {
            let b = rng.range(6, 15);
            [rng.range(3, 9), b, rng.range(1, b - 1), 0]
        }
        9 => [2 * rng.range(2, 15), rng.range(2, 10), 0, 0],
        10 => {
            let b = rng.range(10, 60);
            let c = rng.range(10, 60);
            [rng.range(100, 500), b, c, rng.range(1, b + c)]
        }
        _ => [rng.range(2, 6), rng.range(2, 9), rng.range(1, 5), 0],
    };
    WordProblem { template, v, person, object }
}

/// Renders a word problem; returns the question (with [`SUFFIX_WORD`]) and
/// its answer.
fn render_word_problem(wp: &WordProblem) -> (String, i64) {
    let (name, he) = PEOPLE[wp.person % PEOPLE.len()];
    let he_lc = he.to_lowercase();
    let obj = OBJECTS[wp.object % OBJECTS.len()];
    let [a, b, c, d] = wp.v;
    let (text, answer) = match wp.template {
        0 => (
            format!("{name} has {a} {obj}. {he} buys {b} bags with {c} {obj} each and gives away {d}. How many {obj} does {name} have now?"),
            a + b * c - d,
        ),
        1 => (format!("A bakery bakes {a} trays of {b} muffins each morning. By noon it has sold {c} muffins. How many muffins are left?"), a * b - c),
        2 => (
            format!("{name} reads {a} pages every day for {b} days and then reads {c} more pages on Sunday. How many pages has {name} read in total?"),
            a * b + c,
        ),
        3 => (
            format!("{name} buys {a} packs of {b} cards and shares all the cards equally among {c} friends. How many cards does each friend get?"),
            a * b / c,
        ),
        4 => (
            format!(
                "A train has {a} cars with {b} seats in each car. When it leaves the first station every seat is taken except {c}. \
                 At the next stop {d} more passengers get on and sit in empty seats. How many passengers are on the train now?"
            ),
            a * b - c + d,
        ),
        5 => (
            format!("{name} earns {a} dollars per hour and works {b} hours. {he} spends {c} dollars on lunch and {d} dollars on a book. How many dollars does {name} have left?"),
            a * b - c - d,
        ),
        6 => (format!("A farmer has {a} chickens and {b} cows. Then the farmer buys {c} more cows. How many legs do all the animals have now?"), 2 * a + 4 * (b + c)),
        7 => (
            format!("{name} had {a} marbles. {he} lost {b} of them in a game and then won twice as many as {he_lc} lost. How many marbles does {name} have now?"),
            a - b + 2 * b,
        ),
        8 => (
            format!("A garden has {a} rows with {b} tulips in each row. {name} picks {c} tulips from every row. How many tulips are left in the garden?"),
            a * (b - c),
        ),
        9 => (
            format!("{name} saves {a} dollars every week for {b} weeks and then spends half of the savings on a bike. How many dollars does {name} have left?"),
            a * b / 2,
        ),
        10 => (
            format!(
                "A library has {a} books. It lends out {b} books on Monday and {c} books on Tuesday, and {d} books are returned on Wednesday. \
                 How many books are in the library now?"
            ),
            a - b - c + d,
        ),
        _ => {
            let cost = a * b + c;
            let bill = if cost <= 20 {
                20
            } else if cost <= 50 {
                50
            } else {
                100
            };
            (
                format!("{name} buys {a} notebooks at {b} dollars each and a pen for {c} dollars. {he} pays with a {bill}-dollar bill. How many dollars of change does {name} get?"),
                bill - cost,
            )
        }
    };
    (format!("{text}{SUFFIX_WORD}"), answer)
}

/// SplitMix64 finaliser (Steele, Lea & Flood 2014) applied to x + golden
/// ratio: a bijective 64-bit mix used to derive per-item streams.
fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 64-bit FNV-1a of a byte string.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, &c| (h ^ c as u64).wrapping_mul(0x0000_0100_0000_01B3))
}

/// SplitMix64 stream.
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        let out = mix64(self.state);
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        out
    }

    /// Uniform integer in `lo..=hi` (requires lo <= hi).
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi - lo + 1) as u64;
        lo + ((self.next_u64() as u128 * span as u128) >> 64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Evaluates "a op b [op c]" with + - * and one optional pair of
    /// parentheses, * before + and -, left to right otherwise.
    fn eval_expr(s: &str) -> i64 {
        fn term(toks: &[&str], i: &mut usize) -> i64 {
            let mut v = atom(toks, i);
            while *i < toks.len() && toks[*i] == "*" {
                *i += 1;
                v *= atom(toks, i);
            }
            v
        }
        fn atom(toks: &[&str], i: &mut usize) -> i64 {
            if toks[*i] == "(" {
                *i += 1;
                let v = sum(toks, i);
                assert_eq!(toks[*i], ")");
                *i += 1;
                v
            } else {
                *i += 1;
                toks[*i - 1].parse().unwrap()
            }
        }
        fn sum(toks: &[&str], i: &mut usize) -> i64 {
            let mut v = term(toks, i);
            while *i < toks.len() && (toks[*i] == "+" || toks[*i] == "-") {
                let op = toks[*i];
                *i += 1;
                let r = term(toks, i);
                v = if op == "+" { v + r } else { v - r };
            }
            v
        }
        let spaced = s.replace('(', "( ").replace(')', " )");
        let toks: Vec<&str> = spaced.split_whitespace().collect();
        let mut i = 0;
        let v = sum(&toks, &mut i);
        assert_eq!(i, toks.len());
        v
    }

    #[test]
    fn render_expr_by_hand() {
        // 12 + 7 * 3 = 12 + 21 = 33.
        assert_eq!(render_expr(3, 12, 7, 3), ("What is 12 + 7 * 3? Answer with the number only.".to_string(), 33));
        // Larger number first: 45 - 17 = 28.
        assert_eq!(render_expr(1, 17, 45, 0).1, 28);
        assert!(render_expr(1, 17, 45, 0).0.starts_with("What is 45 - 17?"));
        // (8 + 5) * 4 = 52; 90 - 9 * 9 = 9; 20 * 9 - 99 = 81.
        assert_eq!(render_expr(6, 8, 5, 4).1, 52);
        assert_eq!(render_expr(5, 90, 9, 9).1, 9);
        assert_eq!(render_expr(4, 20, 9, 99).1, 81);
    }

    #[test]
    fn word_problem_by_hand() {
        // Sam: 14 + 3 · 6 - 9 = 14 + 18 - 9 = 23.
        let wp = WordProblem { template: 0, v: [14, 3, 6, 9], person: 0, object: 0 };
        let (q, a) = render_word_problem(&wp);
        assert_eq!(
            q,
            "Sam has 14 apples. He buys 3 bags with 6 apples each and gives away 9. How many apples does Sam have now? Give the final answer as a number."
        );
        assert_eq!(a, 23);
        // Legs: 2 · 5 + 4 · (3 + 2) = 10 + 20 = 30.
        assert_eq!(render_word_problem(&WordProblem { template: 6, v: [5, 3, 2, 0], person: 1, object: 0 }).1, 30);
        // Cards: 6 packs · 4 cards / 3 friends = 24 / 3 = 8.
        assert_eq!(render_word_problem(&WordProblem { template: 3, v: [6, 4, 3, 0], person: 2, object: 0 }).1, 8);
        // Change: 3 · 7 + 2 = 23 > 20, so a 50 bill: 50 - 23 = 27.
        let (q, a) = render_word_problem(&WordProblem { template: 11, v: [3, 7, 2, 0], person: 1, object: 0 });
        assert!(q.contains("50-dollar bill") && q.contains("She pays"));
        assert_eq!(a, 27);
        // Library: 200 - 30 - 20 + 15 = 165.
        assert_eq!(render_word_problem(&WordProblem { template: 10, v: [200, 30, 20, 15], person: 0, object: 0 }).1, 165);
    }

    #[test]
    fn generated_items_are_consistent() {
        for level in 1..=2 {
            for it in generate_arithmetic(300, 11, level) {
                let expr = it.question.strip_prefix("What is ").unwrap().strip_suffix(&format!("?{SUFFIX_EXPR}")).unwrap();
                let v = eval_expr(expr);
                assert!(v >= 0, "{}", it.question);
                assert_eq!(v.to_string(), it.answer, "{}", it.question);
            }
        }
        let l3 = generate_arithmetic(400, 11, 3);
        for it in &l3 {
            assert!(it.question.ends_with(SUFFIX_WORD));
            assert!(it.answer.parse::<i64>().unwrap() >= 0, "{it:?}");
        }
        assert_eq!(l3[7].id, "arith-L3-0007");
    }

    #[test]
    fn word_problems_cover_templates_with_valid_numbers() {
        let mut seen = [false; N_TEMPLATES];
        for k in 0..3000u64 {
            let wp = draw_word_problem(&mut SplitMix64 { state: mix64(k) });
            seen[wp.template] = true;
            let [a, b, c, _] = wp.v;
            // Equal shares and halves must divide exactly.
            match wp.template {
                3 => assert_eq!((a * b) % c, 0),
                9 => assert_eq!((a * b) % 2, 0),
                _ => {}
            }
            let (q, ans) = render_word_problem(&wp);
            assert!(ans >= 0, "{q} -> {ans}");
            assert!(!q.contains("  "), "{q}");
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn reproducible_and_prefix_stable() {
        for level in 1..=3 {
            let big = generate_arithmetic(50, 3, level);
            assert_eq!(generate_arithmetic(20, 3, level), big[..20].to_vec());
            assert_eq!(generate_arithmetic(50, 3, level), big);
            assert_ne!(generate_arithmetic(50, 4, level), big);
        }
        let mixed = generate_mixed(30, 9, &[1, 2, 3]);
        assert_eq!(generate_mixed(10, 9, &[1, 2, 3]), mixed[..10].to_vec());
        assert_eq!(mixed[4].id, "arith-L2-0004");
        assert_eq!(mixed[4], generate_arithmetic(5, 9, 2)[4]);
        assert!(mixed[5].question.ends_with(SUFFIX_WORD));
        assert_eq!(generate_arithmetic(1, 0, 7)[0].id, "arith-L3-0000");
    }

    #[test]
    fn split_is_per_item() {
        let items = generate_mixed(1000, 1, &[1, 2, 3]);
        let (dev, test) = split_dev_test(&items, 0.3, 5);
        assert_eq!(dev.len() + test.len(), 1000);
        // Expected 300, sd sqrt(1000 · 0.3 · 0.7) = 14.5; allow ±5 sd.
        assert!((228..=372).contains(&dev.len()), "{}", dev.len());
        // A subset (reversed) puts each item on the same side.
        let subset: Vec<QaItem> = items[100..200].iter().rev().cloned().collect();
        let (dev_sub, _) = split_dev_test(&subset, 0.3, 5);
        for it in &subset {
            assert_eq!(dev.contains(it), dev_sub.contains(it));
        }
        assert_eq!(split_dev_test(&items, 0.0, 5).0.len(), 0);
        assert_eq!(split_dev_test(&items, 1.0, 5).1.len(), 0);
    }

    fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("evaltasks-{}-{name}", std::process::id()));
        std::fs::write(&p, contents).unwrap();
        p
    }

    #[test]
    fn qa_jsonl() {
        let p = temp_file(
            "qa.jsonl",
            "{\"question\": \"Q1?\", \"answer\": \"She pays 3 + 4.\\n#### 1,072\"}\n\n\
             {\"problem\": \"Q2?\", \"target\": 5, \"id\": 17}\n\
             {\"input\": \"Q3?\", \"output\": \" Paris \", \"id\": \"x\"}\n",
        );
        let items = load_qa_jsonl(&p).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0], QaItem { id: "line-1".into(), question: "Q1?".into(), answer: "1072".into() });
        assert_eq!(items[1], QaItem { id: "17".into(), question: "Q2?".into(), answer: "5".into() });
        assert_eq!(items[2].answer, "Paris");
        assert_eq!(items[2].id, "x");
        std::fs::remove_file(&p).ok();
    }

    #[test]
    fn qa_jsonl_errors() {
        let p = temp_file("noans.jsonl", "{\"question\": \"Q1?\", \"answer\": \"1\"}\n{\"question\": \"Q2?\"}\n");
        let e = load_qa_jsonl(&p).unwrap_err();
        assert!(e.contains("line 2") && e.contains("answer"), "{e}");
        let p2 = temp_file("noq.jsonl", "{\"answer\": \"1\"}\n");
        let e = load_qa_jsonl(&p2).unwrap_err();
        assert!(e.contains("line 1") && e.contains("question"), "{e}");
        let p3 = temp_file("empty.jsonl", "\n  \n");
        assert!(load_qa_jsonl(&p3).unwrap_err().contains("empty"));
        let p4 = temp_file("bad.jsonl", "not json\n");
        assert!(load_qa_jsonl(&p4).unwrap_err().contains("line 1"));
        for p in [p, p2, p3, p4] {
            std::fs::remove_file(&p).ok();
        }
    }

    #[test]
    fn prompts() {
        let builtin = builtin_open_prompts();
        assert!(builtin.len() >= 24);
        let unique: std::collections::HashSet<&String> = builtin.iter().collect();
        assert_eq!(unique.len(), builtin.len());
        assert!(builtin.iter().all(|p| !p.contains('\n') && p.trim() == p && !p.is_empty()));

        let p = temp_file("prompts.txt", "Tell me a joke.\n\n  Explain rain.  \n{\"prompt\": \"From JSON\"}\n{\"text\": \"Text key\"}\n");
        assert_eq!(load_prompts(&p).unwrap(), vec!["Tell me a joke.", "Explain rain.", "From JSON", "Text key"]);
        let p2 = temp_file("noprompt.jsonl", "{\"other\": 1}\n");
        assert!(load_prompts(&p2).unwrap_err().contains("line 1"));
        let p3 = temp_file("empty.txt", "");
        assert!(load_prompts(&p3).is_err());
        for p in [p, p2, p3] {
            std::fs::remove_file(&p).ok();
        }
    }
}
