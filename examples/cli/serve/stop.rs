//! Stop strings on streamed text: text that could still become a stop
//! string is held back, so a client never receives part of one.

/// Watches generated text for the request's stop strings.
#[derive(Debug, Default)]
pub struct StopWatch {
    stops: Vec<String>,
    /// Text received but not yet released.
    held: String,
}

/// What [`StopWatch::push`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Watched {
    /// Text that can be sent (possibly empty: held back for now).
    Go(String),
    /// A stop string completed: the text before it, the last to send.
    Stop(String),
}

impl StopWatch {
    /// Empty stop strings are ignored (they would stop before the first
    /// token).
    pub fn new(stops: Vec<String>) -> Self {
        Self { stops: stops.into_iter().filter(|s| !s.is_empty()).collect(), held: String::new() }
    }

    /// Adds `piece` and returns what may be sent now.
    pub fn push(&mut self, piece: &str) -> Watched {
        self.held.push_str(piece);
        if self.stops.is_empty() {
            return Watched::Go(std::mem::take(&mut self.held));
        }
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            self.held.truncate(at);
            return Watched::Stop(std::mem::take(&mut self.held));
        }
        // Keep the longest suffix that is a proper prefix of a stop string.
        let keep = self.stops.iter().map(|s| longest_suffix_prefix(&self.held, s)).max().unwrap_or(0);
        let cut = self.held.len() - keep;
        let rest = self.held.split_off(cut);
        Watched::Go(std::mem::replace(&mut self.held, rest))
    }

    /// The text still held when generation ends for another reason.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Length in bytes of the longest suffix of `text` that is a proper prefix
/// of `stop`, cut at character boundaries.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = (stop.len() - 1).min(text.len());
    (1..=max).rev().find(|&n| text.is_char_boundary(text.len() - n) && stop.starts_with(&text[text.len() - n..])).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_may_start_a_stop_string_is_held_back() {
        let mut w = StopWatch::new(vec!["\nUser:".into()]);
        assert_eq!(w.push("Hello"), Watched::Go("Hello".into()));
        assert_eq!(w.push(" there\nUs"), Watched::Go(" there".into()));
        assert_eq!(w.push("ual"), Watched::Go("\nUsual".into()));
        assert_eq!(w.push("\nUser: hi"), Watched::Stop(String::new()));
    }

    #[test]
    fn the_earliest_stop_string_wins_and_cuts_the_text() {
        let mut w = StopWatch::new(vec!["END".into(), "ST".into()]);
        assert_eq!(w.push("abc STOP END"), Watched::Stop("abc ".into()));
    }

    #[test]
    fn without_stop_strings_everything_goes_and_finish_returns_the_rest() {
        let mut w = StopWatch::new(vec![String::new()]);
        assert_eq!(w.push("a"), Watched::Go("a".into()));
        let mut w = StopWatch::new(vec!["xyz".into()]);
        assert_eq!(w.push("ax"), Watched::Go("a".into()));
        assert_eq!(w.finish(), "x");
    }

    #[test]
    fn multibyte_text_is_cut_at_character_boundaries() {
        let mut w = StopWatch::new(vec!["é!".into()]);
        assert_eq!(w.push("café"), Watched::Go("caf".into()));
        assert_eq!(w.push("?"), Watched::Go("é?".into()));
    }
}
