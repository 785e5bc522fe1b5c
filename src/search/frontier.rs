//! The Pareto frontier over the objectives: a candidate is on it when no other candidate is
//! at least as good on every objective and better on one. An objective with a negative
//! weight counts lower as better.
use super::records::CandidateRow;

/// `a` dominates `b` under `signs` (+1 higher is better, −1 lower is better).
fn dominates(a: &[f64], b: &[f64], signs: &[f64]) -> bool {
    let mut better = false;
    for ((x, y), s) in a.iter().zip(b).zip(signs) {
        let (x, y) = (x * s, y * s);
        if x < y {
            return false;
        }
        if x > y {
            better = true;
        }
    }
    better
}

/// Indices of the non-dominated rows; among rows with identical scores only the first
/// (lowest id) is kept.
pub fn pareto(rows: &[CandidateRow], weights: &[f64]) -> Vec<usize> {
    let signs: Vec<f64> = weights
        .iter()
        .map(|w| if *w < 0.0 { -1.0 } else { 1.0 })
        .collect();
    (0..rows.len())
        .filter(|&i| {
            !rows.iter().enumerate().any(|(j, other)| {
                dominates(&other.scores, &rows[i].scores, &signs)
                    || (j < i && other.scores == rows[i].scores)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, scores: &[f64]) -> CandidateRow {
        CandidateRow {
            id,
            generation: 0,
            genes: vec![],
            scores: scores.to_vec(),
            fitness: scores.iter().sum(),
            hash: String::new(),
            merge_s: 0.0,
            eval_s: 0.0,
        }
    }

    #[test]
    fn dominated_and_duplicate_rows_are_left_out() {
        let rows = vec![
            row(0, &[0.5, 0.5]),
            row(1, &[0.9, 0.1]),
            row(2, &[0.4, 0.4]),
            row(3, &[0.5, 0.5]),
            row(4, &[0.1, 0.9]),
            row(5, &[0.5, 0.6]),
        ];
        assert_eq!(pareto(&rows, &[1.0, 1.0]), vec![1, 4, 5]);
        // lower-is-better second axis
        assert_eq!(pareto(&rows, &[1.0, -1.0]), vec![1]);
    }
}
