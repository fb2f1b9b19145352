//! The outcome tally that ends a `--repeat` run: how many attempts ended in each status or failure, as
//! a small text bar chart with counts and percentages.
//!
//! ```text
//! outcomes of 20 requests:
//!   200 OK         ##################             12   60.0%
//!   403 Forbidden  ######                          4   20.0%
//!   timed out      ######                          4   20.0%
//! ```

/// Width of the longest possible bar (all attempts with one outcome).
const BAR_WIDTH: usize = 30;

/// What one attempt ended in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// A response, by its status line (`200 OK`).
    Response(String),
    /// No response, by the kind of failure (`timed out`).
    Failure(&'static str),
}

impl Outcome {
    pub fn label(&self) -> &str {
        match self {
            Outcome::Response(status_line) => status_line,
            Outcome::Failure(kind) => kind,
        }
    }
}

/// Counts of outcomes, responses first by status, then failures.
#[derive(Debug, Default)]
pub struct Tally {
    counts: Vec<(Outcome, u32)>,
}

impl Tally {
    pub fn record(&mut self, outcome: Outcome) {
        match self.counts.iter_mut().find(|(o, _)| *o == outcome) {
            Some((_, count)) => *count += 1,
            None => {
                self.counts.push((outcome, 1));
                self.counts.sort_by(|a, b| a.0.cmp(&b.0));
            }
        }
    }

    pub fn total(&self) -> u32 {
        self.counts.iter().map(|(_, n)| n).sum()
    }

    /// Attempts that got no response.
    pub fn failures(&self) -> u32 {
        self.counts
            .iter()
            .filter(|(o, _)| matches!(o, Outcome::Failure(_)))
            .map(|(_, n)| n)
            .sum()
    }

    /// The chart, one line per outcome, ending in a newline.
    pub fn render(&self) -> String {
        let total = self.total();
        let noun = if total == 1 { "request" } else { "requests" };
        let mut out = format!("outcomes of {total} {noun}:\n");
        let width = self
            .counts
            .iter()
            .map(|(o, _)| o.label().chars().count())
            .max()
            .unwrap_or(0);
        let count_width = total.to_string().len();
        for (outcome, count) in &self.counts {
            let share = f64::from(*count) / f64::from(total.max(1));
            let bar = ((share * BAR_WIDTH as f64).round() as usize).max(1);
            out.push_str(&format!(
                "  {:<width$}  {:<BAR_WIDTH$}  {count:>count_width$}  {:>5.1}%\n",
                outcome.label(),
                "#".repeat(bar),
                share * 100.0,
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_percentages_and_bars() {
        let mut tally = Tally::default();
        for _ in 0..3 {
            tally.record(Outcome::Failure("timed out"));
        }
        for _ in 0..12 {
            tally.record(Outcome::Response("200 OK".into()));
        }
        for _ in 0..5 {
            tally.record(Outcome::Response("500 Internal Server Error".into()));
        }
        assert_eq!((tally.total(), tally.failures()), (20, 3));
        let chart = tally.render();
        let lines: Vec<&str> = chart.lines().collect();
        assert_eq!(lines[0], "outcomes of 20 requests:");
        assert_eq!(
            lines[1],
            format!(
                "  200 OK                     {:<30}  12   60.0%",
                "#".repeat(18)
            )
        );
        assert!(lines[2].starts_with("  500 Internal Server Error  ########  "));
        assert!(lines[2].ends_with(" 5   25.0%"));
        assert!(lines[3].starts_with("  timed out                  #####  "));
        assert!(lines[3].ends_with(" 3   15.0%"));
    }

    #[test]
    fn a_rare_outcome_still_gets_a_mark() {
        let mut tally = Tally::default();
        for _ in 0..99 {
            tally.record(Outcome::Response("200 OK".into()));
        }
        tally.record(Outcome::Failure("connection refused"));
        assert!(tally.render().contains("connection refused  #  "));
    }
}
