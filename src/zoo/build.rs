//! `lamarck zoo build`: the recipe (shape and training phases) and the build that trains
//! base → generalist → specialists and writes the model folders and evaluation tasks.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Tensor;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::save::{io_err, write_model, write_text, SharedFiles};
use super::skills::{EvalSplits, Skill, DEV_ITEMS, TEST_ITEMS};
use super::train::{train, Phase};
use super::twin::{Params, ZooShape};
use super::{tokenizer, Error, Result};

/// Everything that determines the zoo's bytes besides the code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZooRecipe {
    pub seed: u64,
    pub shape: ZooShape,
    pub base: Phase,
    pub generalist: Phase,
    pub specialists: Vec<(Skill, Phase)>,
}

impl ZooRecipe {
    /// The shipped recipe; `steps_scale` multiplies every phase's steps (1.0 for the real
    /// zoo, e.g. 0.01 for a build that takes seconds in tests).
    pub fn standard(seed: u64, steps_scale: f64) -> ZooRecipe {
        let scaled = |n: usize| ((n as f64 * steps_scale).round() as usize).max(1);
        let phase =
            |name: &str, skills: &[Skill], steps: usize, lr: f64, loss_on_prompt: bool| Phase {
                name: name.to_string(),
                skills: skills.to_vec(),
                steps: scaled(steps),
                batch_size: 32,
                peak_lr: lr,
                warmup_steps: scaled(steps / 20).min(scaled(steps)),
                weight_decay: 0.0,
                loss_on_prompt,
            };
        ZooRecipe {
            seed,
            shape: ZooShape {
                vocab_size: 128,
                hidden_size: 64,
                intermediate_size: 128,
                num_hidden_layers: 3,
                num_attention_heads: 4,
                num_key_value_heads: 2,
                max_position_embeddings: 512,
                rope_theta: 10000.0,
                rms_norm_eps: 1e-6,
            },
            base: phase("base", &Skill::ALL, 2500, 4e-3, true),
            generalist: phase("generalist", &Skill::ALL, 300, 1e-3, false),
            specialists: Skill::ALL
                .iter()
                .map(|&s| {
                    (
                        s,
                        phase(&format!("specialist-{}", s.name()), &[s], 800, 2e-3, false),
                    )
                })
                .collect(),
        }
    }
}

/// Where and how to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub out: PathBuf,
    /// Also write the evaluation tasks here (e.g. `evals/zoo`).
    pub evals: Option<PathBuf>,
    pub force: bool,
    pub show_progress: bool,
    /// Specialists trained at the same time (each on one thread).
    pub parallel: usize,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// `(folder name, path, mean loss over the last 10% of its phase)`.
    pub models: Vec<(String, PathBuf, f32)>,
    pub seconds: f64,
}

/// Folder name of a skill's specialist.
pub fn specialist_name(skill: Skill) -> String {
    format!("specialist-{}", skill.name())
}

pub fn build(recipe: &ZooRecipe, opts: &BuildOptions) -> Result<BuildReport> {
    let started = Instant::now();
    std::fs::create_dir_all(&opts.out).map_err(io_err(&opts.out))?;
    // Refuse before hours of training, not after: every model folder the build will write.
    if !opts.force {
        let mut names = vec!["base".to_string(), "generalist".to_string()];
        names.extend(recipe.specialists.iter().map(|(s, _)| specialist_name(*s)));
        if let Some(existing) = names.iter().map(|n| opts.out.join(n)).find(|p| p.exists()) {
            return Err(Error::Exists { path: existing });
        }
    }
    let tok = tokenizer::build()?;
    let shared = SharedFiles {
        tokenizer_json: tokenizer::tokenizer_json(&tok)?,
        tokenizer_config_json: tokenizer::tokenizer_config_json(),
    };
    write_text(&opts.out.join("tokenizer.json"), &shared.tokenizer_json)?;
    write_text(
        &opts.out.join("tokenizer_config.json"),
        &shared.tokenizer_config_json,
    )?;
    let recipe_json = serde_json::to_string_pretty(recipe).unwrap_or_default() + "\n";
    write_text(&opts.out.join("recipe.json"), &recipe_json)?;

    let splits = EvalSplits::generate(recipe.seed, DEV_ITEMS, TEST_ITEMS);
    if let Some(dir) = &opts.evals {
        write_tasks(dir, &splits)?;
    }

    let total: usize = recipe.base.steps
        + recipe.generalist.steps
        + recipe
            .specialists
            .iter()
            .map(|(_, p)| p.steps)
            .sum::<usize>();
    let progress = if opts.show_progress {
        ProgressBar::new(total as u64)
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} steps, eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let ctx = Ctx {
        recipe,
        opts,
        splits: &splits,
        tok: &tok,
        shared: &shared,
        progress: &progress,
    };
    let mut models = Vec::new();

    let base = Params::init(&recipe.shape, recipe.seed)?;
    let (base_tensors, loss) = ctx.run_phase(&base, &recipe.base, "base")?;
    models.push(("base".to_string(), opts.out.join("base"), loss));

    let generalist = Params::from_tensors(&base_tensors)?;
    let (general_tensors, loss) = ctx.run_phase(&generalist, &recipe.generalist, "generalist")?;
    models.push(("generalist".to_string(), opts.out.join("generalist"), loss));

    for group in recipe.specialists.chunks(opts.parallel.max(1)) {
        let results: Vec<Result<(String, f32)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = group
                .iter()
                .map(|(skill, phase)| {
                    let (ctx, general_tensors) = (&ctx, &general_tensors);
                    scope.spawn(move || {
                        let params = Params::from_tensors(general_tensors)?;
                        let name = specialist_name(*skill);
                        let (_, loss) = ctx.run_phase(&params, phase, &name)?;
                        Ok((name, loss))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Thread {
                            what: "specialist training".into(),
                        })
                    })
                })
                .collect()
        });
        for r in results {
            let (name, loss) = r?;
            models.push((name.clone(), opts.out.join(&name), loss));
        }
    }
    progress.finish_and_clear();
    Ok(BuildReport {
        models,
        seconds: started.elapsed().as_secs_f64(),
    })
}

struct Ctx<'a> {
    recipe: &'a ZooRecipe,
    opts: &'a BuildOptions,
    splits: &'a EvalSplits,
    tok: &'a Tokenizer,
    shared: &'a SharedFiles,
    progress: &'a ProgressBar,
}

impl Ctx<'_> {
    /// Train `params` for `phase` and save them as `<out>/<name>`.
    fn run_phase(
        &self,
        params: &Params,
        phase: &Phase,
        name: &str,
    ) -> Result<(BTreeMap<String, Tensor>, f32)> {
        let started = Instant::now();
        let loss = train(
            &self.recipe.shape,
            params,
            phase,
            self.recipe.seed,
            self.splits,
            self.tok,
            self.progress,
        )?;
        tracing::info!(
            "{name}: {} steps in {:.1} s, final loss {loss:.4}",
            phase.steps,
            started.elapsed().as_secs_f64()
        );
        let tensors = params.snapshot()?;
        write_model(
            &self.opts.out.join(name),
            &self.recipe.shape,
            &tensors,
            self.shared,
            self.opts.force,
        )?;
        Ok((tensors, loss))
    }
}

/// Write `<dir>/<skill>.yaml` and `<dir>/<skill>/{dev,test}.jsonl` for every skill.
pub fn write_tasks(dir: &Path, splits: &EvalSplits) -> Result<()> {
    for (skill, dev, test) in &splits.per_skill {
        let data = dir.join(skill.name());
        std::fs::create_dir_all(&data).map_err(io_err(&data))?;
        for (split, items) in [("dev", dev), ("test", test)] {
            let mut text = String::new();
            for item in items {
                let line = serde_json::json!({"prompt": item.prompt, "answer": item.answer});
                text.push_str(&line.to_string());
                text.push('\n');
            }
            write_text(&data.join(format!("{split}.jsonl")), &text)?;
        }
        write_text(
            &dir.join(format!("{}.yaml", skill.name())),
            &task_yaml(*skill),
        )?;
    }
    Ok(())
}

fn task_yaml(skill: Skill) -> String {
    format!(
        "# Zoo skill `{name}` (see zoo/README.md). Generated by `lamarck zoo build`.\n\
         task: zoo_{name}\n\
         dataset_path: {name}\n\
         output_type: generate_until\n\
         validation_split: dev\n\
         test_split: test\n\
         doc_to_text: \"{{{{prompt}}}}\"\n\
         doc_to_target: \"{{{{answer}}}}\"\n\
         generation_kwargs:\n  until: [\"\\n\"]\n  max_gen_toks: {max}\n\
         metric_list:\n  - metric: exact_match\n",
        name = skill.name(),
        max = skill.max_answer_chars() + 2
    )
}
