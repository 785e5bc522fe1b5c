//! Prompts: few-shot examples drawn with a fixed seed, and the tokenizer's chat template.
use serde_json::Value;

use super::item::gold_index;
use super::task::template::{Input, Target, Templates};
use super::task::{data, TaskSpec};
use super::tokenizer::TextTokenizer;
use super::{Error, Result};
use crate::model::splitmix::SplitMix64;

/// Seed of the few-shot sampler (lm-eval's default `fewshot_seed`).
pub const FEWSHOT_SEED: u64 = 1234;

/// One user turn through the tokenizer's chat template, with the generation prompt.
pub fn apply_chat_template(tok: &TextTokenizer, content: &str) -> Result<String> {
    let template = tok.chat_template.as_ref().ok_or_else(|| {
        Error::Invalid("--apply-chat-template: tokenizer_config.json has no chat_template".into())
    })?;
    let mut env = minijinja::Environment::new();
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    let eos = match tok.eos_id {
        Some(id) => tok.decode(&[id], false)?,
        None => String::new(),
    };
    env.render_str(
        template,
        minijinja::context! {
            messages => vec![minijinja::context! { role => "user", content => content }],
            add_generation_prompt => true,
            bos_token => tok.bos_token.clone().unwrap_or_default(),
            eos_token => eos,
        },
    )
    .map_err(|e| Error::Invalid(format!("chat template: {e:#}")))
}

/// Few-shot examples: drawn without replacement from the task's few-shot split with a
/// fixed seed, skipping the document being evaluated (as lm-eval does when the few-shot
/// and evaluation splits are the same). The RNG is lamarck's own, so the examples drawn
/// are reproducible but not the ones Python's `random.Random(1234)` would pick.
pub(crate) struct FewshotSource {
    examples: Vec<(Value, String)>,
    same_split: bool,
}

impl FewshotSource {
    pub(crate) fn new(
        task: &TaskSpec,
        eval_split: &str,
        templates: &Templates,
    ) -> Result<FewshotSource> {
        if task.num_fewshot == 0 {
            return Ok(FewshotSource {
                examples: Vec::new(),
                same_split: false,
            });
        }
        let split = task.fewshot_source().ok_or_else(|| Error::Task {
            path: task.file.clone(),
            key: "num_fewshot".into(),
            message: "few-shot examples need a fewshot_split (or training/validation split)".into(),
        })?;
        let docs = task.process_docs(data::load_split(task, &split)?)?;
        let mut examples = Vec::with_capacity(docs.len());
        for (i, doc) in docs.into_iter().enumerate() {
            // Multiple input: the example's question is its gold context (lm-eval's
            // `q = c[q]`).
            let text =
                match templates.input(&task.doc_to_text, &doc, i, "doc_to_text (few-shot)")? {
                    Input::Text(t) => t,
                    Input::Choice(gold) => {
                        let spec = task.doc_to_choice.as_ref().ok_or_else(|| Error::Task {
                            path: task.file.clone(),
                            key: "doc_to_choice".into(),
                            message: "doc_to_text gives an index: the task needs doc_to_choice"
                                .into(),
                        })?;
                        let choices = templates.choices(spec, &doc, i)?;
                        let g = gold_index(&Target::Index(gold), &choices, task, i)?;
                        choices[g].clone()
                    }
                };
            let target =
                templates.target(&task.doc_to_target, &doc, i, task.doc_to_choice.is_some())?;
            let target = match (target, &task.doc_to_choice) {
                (Target::Index(idx), Some(spec)) => {
                    let choices = templates.choices(spec, &doc, i)?;
                    gold_index(&Target::Index(idx), &choices, task, i)
                        .map(|g| choices[g].clone())?
                }
                (Target::Index(idx), None) => idx.to_string(),
                (Target::Text(t), _) => t,
            };
            let shot = format!("{text}{}{target}", task.target_delimiter);
            examples.push((doc, shot));
        }
        if examples.len() < task.num_fewshot {
            return Err(Error::Task {
                path: task.file.clone(),
                key: "num_fewshot".into(),
                message: format!(
                    "{} few-shot examples asked, split `{split}` has {}",
                    task.num_fewshot,
                    examples.len()
                ),
            });
        }
        Ok(FewshotSource {
            examples,
            same_split: split == eval_split,
        })
    }

    pub(crate) fn context(
        &self,
        task: &TaskSpec,
        doc: &Value,
        rng: &mut SplitMix64,
    ) -> Result<String> {
        if task.num_fewshot == 0 {
            return Ok(String::new());
        }
        let n = task.num_fewshot + usize::from(self.same_split);
        let n = n.min(self.examples.len());
        let picked = if task.fewshot_first_n {
            (0..n).collect()
        } else {
            sample(rng, self.examples.len(), n)
        };
        let shots: Vec<&str> = picked
            .into_iter()
            .filter(|&i| !(self.same_split && &self.examples[i].0 == doc))
            .take(task.num_fewshot)
            .map(|i| self.examples[i].1.as_str())
            .collect();
        Ok(format!(
            "{}{}",
            shots.join(&task.fewshot_delimiter),
            task.fewshot_delimiter
        ))
    }
}

/// `k` distinct indices below `n` (partial Fisher–Yates), drawn from the crate's one
/// SplitMix64 (few-shot sampling).
fn sample(rng: &mut SplitMix64, n: usize, k: usize) -> Vec<usize> {
    let mut pool: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = i + (rng.next_u64() % (n - i) as u64) as usize;
        pool.swap(i, j);
    }
    pool.truncate(k);
    pool
}
