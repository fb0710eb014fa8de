//! The configurations `eval` compares: named presets (the baselines and
//! our samplers at their defaults) or `NAME=FLAGS` given on the command
//! line, and the grid each one may be tuned over with `--tune-budget`.

/// One contender: a name for the report and the generation flags that
/// build its chain (parsed by the same parser as `generate`'s flags).
#[derive(Debug, Clone, PartialEq)]
pub struct EvalConfig {
    pub name: String,
    pub flags: String,
    /// Flag sets appended to `flags` when tuning; the first is always ""
    /// (the configuration as given).
    pub grid: Vec<String>,
}

/// Temperatures of the baselines' tuning grid.
const BASELINE_TEMPS: [f32; 6] = [0.3, 0.5, 0.7, 0.8, 1.0, 1.2];
/// Min-p values of the baselines' tuning grid.
const BASELINE_MIN_PS: [f32; 4] = [0.02, 0.05, 0.1, 0.2];

/// The presets, in report order: what `eval` runs when no `--config` is
/// given. `greedy`, `default` (the CLI's llama.cpp-like chain), `min-p`
/// (T 1, min-p 0.1) and `temp-1` (plain sampling) are the baselines.
pub const PRESETS: &[(&str, &str)] = &[
    ("greedy", "--temp 0"),
    ("default", ""),
    ("min-p", "--top-k 0 --top-p 1 --min-p 0.1 --temp 1"),
    ("temp-1", "--top-k 0 --top-p 1 --min-p 0 --temp 1"),
    ("entropix", "--sampler entropix"),
    ("four-mode", "--sampler four-mode"),
    ("alpha", "--sampler alpha"),
    ("dirichlet", "--sampler dirichlet"),
];

/// Parses `--config` values: a preset name, or `NAME=FLAGS`. No values:
/// every preset.
pub fn parse_configs(specs: &[String]) -> Result<Vec<EvalConfig>, String> {
    if specs.is_empty() {
        return Ok(PRESETS.iter().map(|(n, f)| config(n, f)).collect());
    }
    let mut out: Vec<EvalConfig> = Vec::new();
    for spec in specs {
        let c = match spec.split_once('=') {
            Some((name, flags)) if !name.trim().is_empty() => config(name.trim(), flags.trim()),
            Some(_) => return Err(format!("--config {spec:?}: the name before '=' is empty")),
            None => match PRESETS.iter().find(|(n, _)| *n == spec.trim()) {
                Some((n, f)) => config(n, f),
                None => {
                    let known: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
                    return Err(format!("--config {spec:?}: not a preset ({}) nor NAME=FLAGS", known.join(", ")));
                }
            },
        };
        if out.iter().any(|o| o.name == c.name) {
            return Err(format!("--config: the name `{}` is used twice", c.name));
        }
        out.push(c);
    }
    Ok(out)
}

fn config(name: &str, flags: &str) -> EvalConfig {
    EvalConfig { name: name.to_string(), flags: flags.to_string(), grid: tuning_grid(flags) }
}

/// What `--tune-budget` may vary for a configuration with these flags.
///
/// - Greedy has nothing to tune (one trial).
/// - Classic chains: temperature x min-p (the knobs a llama.cpp user turns).
/// - Entropix and four-mode: the base temperature (which every strategy
///   scales) x the base min-p.
/// - AlphaSampler: its COLD and HOT points.
/// - Dirichlet: the target entropy's offset (`target_bias_nats`) x its
///   weight on the running cross-entropy (`target_cross_ent_weight`),
///   which set the entropy its temperature tuning aims for.
///
/// The order is a fixed interleaving (not the nested loop), so that a small
/// budget still spreads over both knobs.
pub fn tuning_grid(flags: &str) -> Vec<String> {
    let sampler = sampler_of(flags);
    let mut grid = vec![String::new()];
    let mut pairs: Vec<String> = Vec::new();
    match sampler.as_deref() {
        None | Some("classic") if flags.contains("--temp 0") && !flags.contains("--temp 0.") => return grid,
        None | Some("classic") => {
            for (t, m) in interleave(&BASELINE_TEMPS, &BASELINE_MIN_PS) {
                pairs.push(format!("--temp {t} --min-p {m}"));
            }
        }
        Some("entropix") | Some("four-mode") => {
            for (t, m) in interleave(&[0.3f32, 0.5, 0.666, 0.8, 1.0, 1.2], &[0.0f32, 0.03, 0.05, 0.1]) {
                pairs.push(format!("--sampler-param temp={t} --sampler-param min_p={m}"));
            }
        }
        Some("alpha") => {
            for (c, h) in interleave(&[0.3f32, 0.6, 0.9, 1.2, 1.5, 1.8], &[1.2f32, 1.5, 1.8, 2.0]) {
                if c < h {
                    pairs.push(format!("--cold-point {c} --hot-point {h}"));
                }
            }
        }
        Some("dirichlet") => {
            for (b, a) in interleave(&[0.1f32, 0.2, 0.35, 0.5, 0.75, 1.0], &[0.0f32, 0.1, 0.2, 0.3]) {
                pairs.push(format!("--sampler-param target_bias_nats={b} --sampler-param target_cross_ent_weight={a}"));
            }
        }
        Some(_) => {}
    }
    grid.extend(pairs);
    grid
}

/// Every pair of `a` x `b`, ordered so that consecutive pairs differ in
/// both coordinates (diagonals of the grid, one after another).
fn interleave<A: Copy, B: Copy>(a: &[A], b: &[B]) -> Vec<(A, B)> {
    let mut out = Vec::with_capacity(a.len() * b.len());
    for shift in 0..b.len() {
        for (i, &x) in a.iter().enumerate() {
            out.push((x, b[(i + shift) % b.len()]));
        }
    }
    out
}

/// The value of `--sampler` in `flags`, if given.
fn sampler_of(flags: &str) -> Option<String> {
    let words = split_flags(flags).ok()?;
    words.iter().position(|w| w == "--sampler").and_then(|i| words.get(i + 1).cloned())
}

/// Splits a flag string into words: whitespace separates, single or
/// double quotes group (no escapes inside them).
pub fn split_flags(flags: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in flags.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            None => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(format!("unbalanced quote in {flags:?}"));
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_names_and_flags() {
        let all = parse_configs(&[]).unwrap();
        assert_eq!(all.len(), PRESETS.len());
        let picked = parse_configs(&["greedy".into(), "mine=--sampler entropix --sampler-param temp=0.5".into()]).unwrap();
        assert_eq!(picked[0].flags, "--temp 0");
        assert_eq!(picked[1].name, "mine");
        assert!(parse_configs(&["nope".into()]).unwrap_err().contains("not a preset"));
        assert!(parse_configs(&["greedy".into(), "greedy".into()]).unwrap_err().contains("twice"));
    }

    #[test]
    fn grids_start_with_the_config_itself() {
        assert_eq!(tuning_grid("--temp 0"), vec![String::new()]);
        let classic = tuning_grid("");
        assert_eq!(classic[0], "");
        assert_eq!(classic.len(), 1 + 24);
        // Consecutive trials move both knobs.
        assert_eq!(classic[1], "--temp 0.3 --min-p 0.02");
        assert_eq!(classic[2], "--temp 0.5 --min-p 0.05");
        assert!(tuning_grid("--sampler entropix")[1].contains("--sampler-param temp=0.3"));
        assert!(tuning_grid("--sampler alpha").iter().skip(1).all(|g| g.contains("--cold-point")));
    }

    #[test]
    fn split_flags_handles_quotes() {
        assert_eq!(split_flags("--a 1  --b 'x y' \"z\"").unwrap(), vec!["--a", "1", "--b", "x y", "z"]);
        assert_eq!(split_flags("--x ''").unwrap(), vec!["--x", ""]);
        assert!(split_flags("--a 'x").is_err());
    }
}
