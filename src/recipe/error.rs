//! Errors of the `recipe` module: every one says which file, which document and which YAML
//! path is wrong, and what to do about it.
use std::fmt;
use std::path::PathBuf;

/// Where in a recipe something is: file, document number (1-based) and YAML path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based document number within a multi-document file.
    pub document: usize,
    /// YAML path such as `slices[1].sources[0].parameters.density` (empty = the document).
    pub path: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {})", self.file.display(), self.document)?;
        if !self.path.is_empty() {
            write!(f, ", at `{}`", self.path)?;
        }
        Ok(())
    }
}

/// `" (did you mean `x`?)"` or nothing.
pub(crate) fn hint(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{file}: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file} (document {document}, line {line}): invalid YAML: {message}")]
    Yaml {
        file: PathBuf,
        document: usize,
        line: usize,
        message: String,
    },
    #[error("{at}: unknown key `{key}`{}; mergekit would silently ignore it. Known keys here: {known}", hint(.suggestion))]
    UnknownKey {
        at: Location,
        key: String,
        suggestion: Option<String>,
        known: String,
    },
    #[error("{at}: merge method `{method}` does not use parameter `{param}`{}; it accepts: {accepted}", hint(.suggestion))]
    UnusedParameter {
        at: Location,
        method: String,
        param: String,
        suggestion: Option<String>,
        accepted: String,
    },
    #[error("{at}: unknown merge method `{method}`{}; supported: {supported}", hint(.suggestion))]
    UnknownMethod {
        at: Location,
        method: String,
        suggestion: Option<String>,
        supported: String,
    },
    #[error("{at}: {message}")]
    Invalid { at: Location, message: String },
    #[error("{at}: {feature} is not supported yet{}", if .advice.is_empty() { String::new() } else { format!("; {}", .advice) })]
    Unsupported {
        at: Location,
        feature: String,
        advice: String,
    },
    #[error("{file}: {message}")]
    Stages { file: PathBuf, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Edit distance counting a swap of two neighbours as one edit (optimal string alignment,
/// for "did you mean": `rnage` is one edit from `range`, two from `name`).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j - 1] + cost)
                .min(d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (distance(&word.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys_only() {
        let keys = ["density", "weight", "epsilon", "lambda"];
        assert_eq!(closest("desnity", keys).as_deref(), Some("density"));
        assert_eq!(closest("wieght", keys).as_deref(), Some("weight"));
        assert_eq!(closest("temperature", keys), None);
        // A swap of neighbours is one edit, so it beats a two-edit neighbour.
        let gene_keys = ["name", "stage", "at", "range", "start"];
        assert_eq!(closest("rnage", gene_keys).as_deref(), Some("range"));
    }
}
