//! Split names from file names, as the Hugging Face Hub and `datasets` infer them when a
//! dataset card declares no `configs:` (huggingface/datasets `data_files.py`,
//! hub-docs `datasets-file-names-and-splits.md`), tried in this order:
//!
//! 1. sharded custom names: `data/<split>-NNNNN-of-NNNNN*.*` (any split name);
//! 2. a directory named after a split keyword: `train/`, `data/test/`, `dev-set/`...;
//! 3. a file named after one: `test.jsonl`, `my_train_file.csv`, `validation-0.parquet`;
//! 4. otherwise every file is the `train` split.
//!
//! Keywords: train, training → `train`; validation, valid, dev, val → `validation`;
//! test, testing, eval, evaluation → `test`. A keyword counts only between non-word
//! characters (`-`, `.`, `_`, space, digits) or the ends of a path component. The first
//! rule that assigns any file wins; later rules are not consulted.
//!
//! Also here: lm-eval-style split slices (`train[:270]`, `train[270:]`), and the glob
//! patterns of dataset cards' `data_files`.
use std::collections::BTreeMap;

use regex::Regex;

const KEYWORDS: &[(&str, &[&str])] = &[
    ("train", &["train", "training"]),
    ("validation", &["validation", "valid", "dev", "val"]),
    ("test", &["test", "testing", "eval", "evaluation"]),
];

/// The split the Hub's rules file a keyword under: `dev` → `validation`, `eval` → `test`.
pub fn canonical(keyword: &str) -> Option<&'static str> {
    KEYWORDS
        .iter()
        .find(|(_, ks)| ks.contains(&keyword))
        .map(|(split, _)| *split)
}

fn is_sep(c: char) -> bool {
    matches!(c, '-' | '.' | '_' | ' ') || c.is_ascii_digit()
}

/// Whether the directory component `dir` names `keyword`: equal, or the keyword after
/// a separator, or before one, or both.
fn dir_names(dir: &str, keyword: &str) -> bool {
    dir == keyword
        || dir
            .strip_prefix(keyword)
            .is_some_and(|r| r.starts_with(is_sep))
        || dir
            .strip_suffix(keyword)
            .is_some_and(|l| l.ends_with(is_sep))
        || contains_delimited(dir, keyword)
}

/// Whether the file name `name` names `keyword`: it starts with the keyword and a
/// separator, or holds it between two separators (`test.csv`, `my_test_file.csv`).
fn file_names(name: &str, keyword: &str) -> bool {
    name.strip_prefix(keyword)
        .is_some_and(|r| r.starts_with(is_sep))
        || contains_delimited(name, keyword)
}

fn contains_delimited(s: &str, keyword: &str) -> bool {
    s.match_indices(keyword).any(|(i, _)| {
        let before = s[..i].chars().next_back();
        let after = s[i + keyword.len()..].chars().next();
        before.is_some_and(is_sep) && after.is_some_and(is_sep)
    })
}

/// Split name → files, for data files given as `/`-separated paths relative to the
/// dataset's root (in the order given; each split keeps that order).
pub fn infer_splits(files: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // 1. data/<split>-00000-of-00001.parquet
    let sharded = Regex::new(r"^data/(\w+(?:\.\w+)*)-[0-9]{5}-of-[0-9]{5}[^/]*\.[^/]*$")
        .expect("constant regex");
    for f in files {
        if let Some(c) = sharded.captures(f) {
            out.entry(c[1].to_string()).or_default().push(f.clone());
        }
    }
    if !out.is_empty() {
        return out;
    }
    // 2. a directory component, 3. the file name
    for in_dir in [true, false] {
        for f in files {
            let mut parts: Vec<&str> = f.split('/').collect();
            let name = parts.pop().unwrap_or("");
            for (split, keywords) in KEYWORDS {
                let hit = keywords.iter().any(|k| {
                    if in_dir {
                        parts.iter().any(|d| dir_names(d, k))
                    } else {
                        file_names(name, k)
                    }
                });
                if hit {
                    out.entry(split.to_string()).or_default().push(f.clone());
                }
            }
        }
        if !out.is_empty() {
            return out;
        }
    }
    // 4. everything is train
    if !files.is_empty() {
        out.insert("train".into(), files.to_vec());
    }
    out
}

/// A split name with an optional row slice: `train[:270]`, `train[270:]`, `test[10:20]`
/// (Python slice bounds, negative counting from the end; as `datasets`' split strings,
/// integers only). Returns the base name and the slice.
pub fn parse_slice(split: &str) -> Result<(&str, Option<(Option<i64>, Option<i64>)>), String> {
    let Some(open) = split.find('[') else {
        return Ok((split, None));
    };
    let (base, rest) = split.split_at(open);
    let inner = rest
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| format!("split `{split}`: a slice is `NAME[START:END]`"))?;
    let (a, b) = inner
        .split_once(':')
        .ok_or_else(|| format!("split `{split}`: a slice is `NAME[START:END]` (with the colon)"))?;
    let bound = |s: &str| -> Result<Option<i64>, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse::<i64>().map(Some).map_err(|_| {
            format!("split `{split}`: slice bound `{s}` is not an integer (percentages are not supported)")
        })
    };
    if base.is_empty() {
        return Err(format!(
            "split `{split}`: the slice needs a split name before `[`"
        ));
    }
    Ok((base, Some((bound(a)?, bound(b)?))))
}

/// Apply a slice to `n` rows: the index range it keeps (Python semantics, clamped).
pub fn slice_range(n: usize, slice: (Option<i64>, Option<i64>)) -> std::ops::Range<usize> {
    let n_i = n as i64;
    let fix = |b: i64| -> usize { (if b < 0 { (n_i + b).max(0) } else { b.min(n_i) }) as usize };
    let start = slice.0.map_or(0, fix);
    let end = slice.1.map_or(n, fix);
    start..end.max(start)
}

/// A glob of a dataset card's `data_files` (`ARC-Challenge/test-*`, `data/**/*.parquet`)
/// as an anchored regex over `/`-separated relative paths: `*` and `?` stay within one
/// path component, `**` crosses them, `[...]` is a character class.
pub fn glob_regex(glob: &str) -> Result<Regex, String> {
    let mut re = String::from("^");
    let chars: Vec<char> = glob.trim_start_matches("./").chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                if chars.get(i + 2) == Some(&'/') {
                    re.push_str("(?:.*/)?");
                    i += 3;
                } else {
                    re.push_str(".*");
                    i += 2;
                }
                continue;
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => match chars[i..].iter().position(|&x| x == ']') {
                Some(end) => {
                    let class: String = chars[i + 1..i + end].iter().collect();
                    let class = class
                        .strip_prefix('!')
                        .map_or(class.clone(), |r| format!("^{r}"));
                    re.push('[');
                    re.push_str(&class.replace('\\', "\\\\"));
                    re.push(']');
                    i += end + 1;
                    continue;
                }
                None => re.push_str("\\["),
            },
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    re.push('$');
    Regex::new(&re).map_err(|e| format!("glob `{glob}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splits(files: &[&str]) -> Vec<(String, Vec<String>)> {
        let files: Vec<String> = files.iter().map(|s| s.to_string()).collect();
        infer_splits(&files).into_iter().collect()
    }

    fn names(files: &[&str]) -> Vec<String> {
        splits(files).into_iter().map(|(s, _)| s).collect()
    }

    #[test]
    fn sharded_names_give_custom_splits() {
        let got = splits(&[
            "data/train-00000-of-00002.parquet",
            "data/train-00001-of-00002.parquet",
            "data/random-00000-of-00001.parquet",
            "data/test-00000-of-00001.parquet",
        ]);
        assert_eq!(got[0].0, "random");
        assert_eq!(got[1].0, "test");
        assert_eq!(got[2].1.len(), 2, "{got:?}");
    }

    #[test]
    fn keywords_in_file_names_need_separators() {
        assert_eq!(
            names(&["train.csv", "my_validation_file.csv", "test1.csv"]),
            ["test", "train", "validation"]
        );
        // `testfile.csv` and `contest.csv` name no split: everything is train
        assert_eq!(
            splits(&["testfile.csv", "contest.csv"]),
            [(
                "train".to_string(),
                vec!["testfile.csv".to_string(), "contest.csv".to_string()]
            )]
        );
        // synonyms
        assert_eq!(
            names(&["data/training.csv", "data/eval.csv", "data/valid.csv"]),
            ["test", "train", "validation"]
        );
        assert_eq!(names(&["dev.jsonl", "val.jsonl"]), ["validation"]);
    }

    #[test]
    fn config_folders_with_split_files() {
        // tinyBenchmarks' layout: <config>/<split>-00000-of-00001.parquet (not under data/)
        let got = splits(&[
            "ARC-Challenge/test-00000-of-00001.parquet",
            "ARC-Challenge/train-00000-of-00001.parquet",
            "ARC-Challenge/validation-00000-of-00001.parquet",
        ]);
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0],
            (
                "test".into(),
                vec!["ARC-Challenge/test-00000-of-00001.parquet".into()]
            )
        );
    }

    #[test]
    fn directory_names_win_over_file_names() {
        let got = splits(&["data/train/test_0.csv", "data/test/shard_0.csv"]);
        assert_eq!(
            got[0],
            ("test".into(), vec!["data/test/shard_0.csv".into()])
        );
        assert_eq!(
            got[1],
            ("train".into(), vec!["data/train/test_0.csv".into()])
        );
    }

    #[test]
    fn no_keyword_means_train() {
        // google/IFEval ships one file: its only split is train, as lm-eval's ifeval expects
        assert_eq!(
            splits(&["ifeval_input_data.jsonl"]),
            [(
                "train".to_string(),
                vec!["ifeval_input_data.jsonl".to_string()]
            )]
        );
        assert!(infer_splits(&[]).is_empty());
    }

    #[test]
    fn synonyms_have_a_canonical_split() {
        assert_eq!(canonical("dev"), Some("validation"));
        assert_eq!(canonical("eval"), Some("test"));
        assert_eq!(canonical("training"), Some("train"));
        assert_eq!(canonical("random"), None);
    }

    #[test]
    fn slices_follow_python() {
        assert_eq!(parse_slice("test").unwrap(), ("test", None));
        let (base, s) = parse_slice("train[:270]").unwrap();
        assert_eq!(base, "train");
        assert_eq!(slice_range(541, s.unwrap()), 0..270);
        let (_, s) = parse_slice("train[270:]").unwrap();
        assert_eq!(slice_range(541, s.unwrap()), 270..541);
        let (_, s) = parse_slice("train[-10:]").unwrap();
        assert_eq!(slice_range(541, s.unwrap()), 531..541);
        let (_, s) = parse_slice("train[5:2]").unwrap();
        assert_eq!(slice_range(10, s.unwrap()), 5..5);
        assert_eq!(slice_range(3, (Some(1), Some(100))), 1..3);
        assert!(parse_slice("train[:50%]")
            .unwrap_err()
            .contains("percentages"));
        assert!(parse_slice("train[3]").is_err());
        assert!(parse_slice("[1:2]").is_err());
    }

    #[test]
    fn card_globs() {
        let g = glob_regex("ARC-Challenge/test-*").unwrap();
        assert!(g.is_match("ARC-Challenge/test-00000-of-00001.parquet"));
        assert!(!g.is_match("ARC-Challenge/sub/test-0.parquet"));
        assert!(!g.is_match("ARC-Easy/test-00000-of-00001.parquet"));
        let g = glob_regex("data/**/*.parquet").unwrap();
        assert!(g.is_match("data/a/b/x.parquet") && g.is_match("data/x.parquet"));
        let g = glob_regex("train-[0-9].csv").unwrap();
        assert!(g.is_match("train-3.csv") && !g.is_match("train-x.csv"));
        assert!(
            glob_regex("a.b").unwrap().is_match("a.b")
                && !glob_regex("a.b").unwrap().is_match("axb")
        );
    }
}
