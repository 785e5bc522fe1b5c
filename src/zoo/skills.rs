//! The zoo's skills: tiny, exactly checkable tasks that a ~100k-parameter model can learn
//! and that are different enough that fine-tuning on one degrades the others.
//!
//! Every item is a `prompt` ending in `=` and an `answer` the model must generate before a
//! newline. The formats (documented in `zoo/README.md`) are:
//! - `add`: `{a}+{b}=` → `{a+b}`, each operand uniform in 0–99.
//! - `reverse`: `reverse {w}=` → `w` reversed, `w` 3–7 lowercase letters.
//! - `sort`: `sort {w}=` → the letters of `w` in alphabetical order, `w` 3–7 letters.
//! - `upper`: `upper {w}=` → `w` in capitals, `w` 5–10 lowercase letters.
use std::collections::BTreeSet;

use super::rng::ZooRng;
use super::train::Phase;

/// One skill of the zoo.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Skill {
    Add,
    Reverse,
    Sort,
    Upper,
}

/// One question/answer pair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Item {
    pub prompt: String,
    pub answer: String,
}

impl Item {
    /// The text a model is trained on: prompt, answer, newline (the stop string).
    pub fn full_text(&self) -> String {
        format!("{}{}\n", self.prompt, self.answer)
    }
}

const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz";

impl Skill {
    pub const ALL: [Skill; 4] = [Skill::Add, Skill::Reverse, Skill::Sort, Skill::Upper];

    /// The skill's name: task name suffix, specialist folder suffix, data folder.
    pub fn name(self) -> &'static str {
        match self {
            Skill::Add => "add",
            Skill::Reverse => "reverse",
            Skill::Sort => "sort",
            Skill::Upper => "upper",
        }
    }

    /// Longest answer in characters (used for `max_gen_toks`, with room for the newline).
    pub fn max_answer_chars(self) -> usize {
        match self {
            Skill::Add => 3,
            Skill::Reverse | Skill::Sort => 7,
            Skill::Upper => 10,
        }
    }

    /// Draw one item of the evaluated distribution.
    pub fn sample(self, rng: &mut ZooRng) -> Item {
        self.sample_in(rng, false)
    }

    /// Draw one item; `easy` draws from a narrower range: words of 3–5 letters for
    /// `reverse` and `sort`, 3–6 for `upper`, sums below 100 for `add`. A phase with `easy`
    /// trains on it only (tried for the trunk and for replay, see zoo/README.md; the
    /// shipped recipe does not use it).
    pub fn sample_in(self, rng: &mut ZooRng, easy: bool) -> Item {
        match self {
            Skill::Add => {
                let (a, b) = loop {
                    let (a, b) = (number(rng), number(rng));
                    if !easy || a + b < 100 {
                        break (a, b);
                    }
                };
                Item {
                    prompt: format!("{a}+{b}="),
                    answer: (a + b).to_string(),
                }
            }
            Skill::Reverse => {
                let w = word(rng, if easy { 5 } else { 7 });
                Item {
                    prompt: format!("reverse {w}="),
                    answer: w.chars().rev().collect(),
                }
            }
            Skill::Sort => {
                let w = word(rng, if easy { 5 } else { 7 });
                let mut sorted: Vec<char> = w.chars().collect();
                sorted.sort_unstable();
                Item {
                    prompt: format!("sort {w}="),
                    answer: sorted.into_iter().collect(),
                }
            }
            Skill::Upper => {
                let n = if easy {
                    rng.range(3, 6)
                } else {
                    rng.range(5, 10)
                };
                let w: String = (0..n)
                    .map(|_| LETTERS[rng.below(LETTERS.len())] as char)
                    .collect();
                Item {
                    prompt: format!("upper {w}="),
                    answer: w.to_ascii_uppercase(),
                }
            }
        }
    }
}

/// A number in 0–99, uniform.
fn number(rng: &mut ZooRng) -> u32 {
    rng.below(100) as u32
}

/// 3 to `longest` random lowercase letters.
fn word(rng: &mut ZooRng, longest: usize) -> String {
    let n = rng.range(3, longest);
    (0..n)
        .map(|_| LETTERS[rng.below(LETTERS.len())] as char)
        .collect()
}

/// Evaluation splits of every skill, and the held-out prompts training must avoid.
#[derive(Debug, Clone)]
pub struct EvalSplits {
    /// `(skill, dev items, test items)` in `Skill::ALL` order.
    pub per_skill: Vec<(Skill, Vec<Item>, Vec<Item>)>,
    held_out: BTreeSet<String>,
}

pub const DEV_ITEMS: usize = 250;
pub const TEST_ITEMS: usize = 300;

impl EvalSplits {
    /// Dev and test items from disjoint random streams (`eval/<skill>/dev`, `…/test`);
    /// duplicates inside a split and test items equal to a dev item are redrawn.
    pub fn generate(seed: u64, dev_items: usize, test_items: usize) -> EvalSplits {
        let mut held_out = BTreeSet::new();
        let mut per_skill = Vec::new();
        for skill in Skill::ALL {
            let dev = draw_unique(skill, seed, "dev", dev_items, &mut held_out);
            let test = draw_unique(skill, seed, "test", test_items, &mut held_out);
            per_skill.push((skill, dev, test));
        }
        EvalSplits {
            per_skill,
            held_out,
        }
    }

    /// Whether `prompt` belongs to a dev or test split.
    pub fn is_held_out(&self, prompt: &str) -> bool {
        self.held_out.contains(prompt)
    }

    /// The items of one skill's split.
    pub fn split(&self, skill: Skill, split: &str) -> &[Item] {
        let (_, dev, test) = self
            .per_skill
            .iter()
            .find(|(s, _, _)| *s == skill)
            .unwrap_or_else(|| unreachable!("every skill has splits"));
        if split == "dev" {
            dev
        } else {
            test
        }
    }
}

fn draw_unique(
    skill: Skill,
    seed: u64,
    split: &str,
    n: usize,
    seen: &mut BTreeSet<String>,
) -> Vec<Item> {
    let mut rng = ZooRng::new(seed, &format!("eval/{}/{split}", skill.name()));
    let mut items = Vec::with_capacity(n);
    while items.len() < n {
        let item = skill.sample(&mut rng);
        if seen.insert(item.prompt.clone()) {
            items.push(item);
        }
    }
    items
}

/// An endless stream of training items of some skills, never a held-out prompt.
pub struct TrainStream<'a> {
    rng: ZooRng,
    skills: Vec<Skill>,
    replay_skills: Vec<Skill>,
    replay_fraction: f64,
    /// Draw every item (own and replayed skills) from the easy range.
    easy: bool,
    splits: &'a EvalSplits,
}

impl<'a> TrainStream<'a> {
    /// Items drawn uniformly over `skills`.
    pub fn new(
        seed: u64,
        purpose: &str,
        skills: &[Skill],
        splits: &'a EvalSplits,
    ) -> TrainStream<'a> {
        TrainStream {
            rng: ZooRng::new(seed, &format!("train/{purpose}")),
            skills: skills.to_vec(),
            replay_skills: Vec::new(),
            replay_fraction: 0.0,
            easy: false,
            splits,
        }
    }

    /// The stream a training phase draws from: its own skills, and a `replay_fraction` of
    /// items drawn uniformly over `replay_skills` instead.
    pub fn for_phase(seed: u64, phase: &Phase, splits: &'a EvalSplits) -> TrainStream<'a> {
        let mut stream = TrainStream::new(seed, &phase.name, &phase.skills, splits);
        stream.easy = phase.easy;
        if !phase.replay_skills.is_empty() && phase.replay_fraction > 0.0 {
            stream.replay_skills = phase.replay_skills.clone();
            stream.replay_fraction = phase.replay_fraction;
        }
        stream
    }

    pub fn next_item(&mut self) -> (Skill, Item) {
        loop {
            let replay = self.replay_fraction > 0.0 && self.rng.unit() < self.replay_fraction;
            let pool = if replay {
                &self.replay_skills
            } else {
                &self.skills
            };
            let skill = pool[self.rng.below(pool.len())];
            let item = skill.sample_in(&mut self.rng, self.easy);
            if !self.splits.is_held_out(&item.prompt) {
                return (skill, item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_correct() {
        let mut rng = ZooRng::new(3, "t");
        for _ in 0..200 {
            let it = Skill::Add.sample(&mut rng);
            let (a, b) = it.prompt.trim_end_matches('=').split_once('+').unwrap();
            assert_eq!(
                it.answer,
                (a.parse::<u32>().unwrap() + b.parse::<u32>().unwrap()).to_string()
            );
            let it = Skill::Reverse.sample(&mut rng);
            let w = it
                .prompt
                .strip_prefix("reverse ")
                .unwrap()
                .trim_end_matches('=');
            assert_eq!(it.answer, w.chars().rev().collect::<String>());
            let it = Skill::Upper.sample(&mut rng);
            let w = it
                .prompt
                .strip_prefix("upper ")
                .unwrap()
                .trim_end_matches('=');
            assert_eq!(it.answer, w.to_uppercase());
        }
    }

    #[test]
    fn splits_are_disjoint_and_training_avoids_them() {
        let splits = EvalSplits::generate(11, 100, 200);
        for (skill, dev, test) in &splits.per_skill {
            assert_eq!(dev.len(), 100);
            assert_eq!(test.len(), 200);
            let dev_prompts: BTreeSet<&str> = dev.iter().map(|i| i.prompt.as_str()).collect();
            assert!(
                test.iter()
                    .all(|i| !dev_prompts.contains(i.prompt.as_str())),
                "{skill:?}"
            );
        }
        let mut stream = TrainStream::new(11, "all", &Skill::ALL, &splits);
        for _ in 0..5000 {
            let (_, item) = stream.next_item();
            assert!(!splits.is_held_out(&item.prompt));
        }
    }
}
