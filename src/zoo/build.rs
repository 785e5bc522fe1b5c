//! `lamarck zoo build`: the recipe (shape and training phases) and the build that trains
//! base → generalist → specialists and writes the model folders and evaluation tasks.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::save::{io_err, write_model, write_text, SharedFiles};
use super::skills::{EvalSplits, Skill, DEV_ITEMS, TEST_ITEMS};
use super::train::{train, Phase};
use super::twin::{Params, Twin, ZooShape};
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
                easy: false,
                replay_skills: Vec::new(),
                replay_fraction: 0.0,
                loss_on_prompt,
                replay_distill: false,
            };
        let specialist = |&(s, steps, lr, replay): &(Skill, usize, f64, f64)| {
            let mut ph = phase(&specialist_name(s), &[s], steps, lr, false);
            ph.replay_skills = Skill::ALL.iter().copied().filter(|&o| o != s).collect();
            ph.replay_fraction = replay;
            ph.replay_distill = true;
            (s, ph)
        };
        ZooRecipe {
            seed,
            shape: ZooShape {
                vocab_size: 128,
                hidden_size: 128,
                intermediate_size: 256,
                num_hidden_layers: 3,
                num_attention_heads: 4,
                num_key_value_heads: 2,
                max_position_embeddings: 512,
                rope_theta: 10000.0,
                rms_norm_eps: 1e-6,
            },
            base: phase("base", &BASE_MIX, 2000, 3e-3, true),
            generalist: phase("generalist", &Skill::ALL, 300, 1e-3, false),
            specialists: SPECIALISTS.iter().map(specialist).collect(),
        }
    }
}

/// The base's pre-training mix: items are drawn uniformly from this list, so `sort` is one
/// row in seven and the others two each. A base that sees less `sort` leaves the generalist
/// room below a specialist on it (with an even mix the base alone reaches 64% on `sort`).
const BASE_MIX: [Skill; 7] = [
    Skill::Add,
    Skill::Reverse,
    Skill::Upper,
    Skill::Add,
    Skill::Reverse,
    Skill::Upper,
    Skill::Sort,
];

/// Specialist phases: skill, steps, peak LR, fraction of rows replaying the other three
/// skills (distilled from the generalist, see `Phase::replay_distill`). Budgets differ per
/// skill as fine-tunes' do: each is the smallest tried on dev that gains ≥ 30 points.
const SPECIALISTS: [(Skill, usize, f64, f64); 4] = [
    (Skill::Add, 1500, 1.5e-3, 0.4),
    (Skill::Reverse, 1500, 8e-4, 0.5),
    (Skill::Sort, 1200, 8e-4, 0.5),
    (Skill::Upper, 900, 5e-4, 0.5),
];

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
    /// Development shortcut: when `out` already holds a base and generalist built from this
    /// recipe's seed, shape and trunk phases, load them instead of training them again
    /// (the result is byte-identical, since specialists start from the saved bf16 weights).
    pub reuse_trunk: bool,
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
    let reuse = if opts.reuse_trunk {
        reusable_trunk(&opts.out, recipe)
    } else {
        Reuse::default()
    };
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

    // Each phase starts from the bf16 weights its parent was saved with, so a specialist's
    // task vector is exactly its difference from the published generalist.
    let base_tensors = if reuse.base {
        models.push(("base".to_string(), opts.out.join("base"), f32::NAN));
        super::save::read_model(&opts.out.join("base"))?
    } else {
        let base = Params::init(&recipe.shape, recipe.seed)?;
        let (base_tensors, loss) = ctx.run_phase(&base, &recipe.base, "base", None)?;
        models.push(("base".to_string(), opts.out.join("base"), loss));
        base_tensors
    };
    let general_tensors = if reuse.generalist {
        models.push((
            "generalist".to_string(),
            opts.out.join("generalist"),
            f32::NAN,
        ));
        super::save::read_model(&opts.out.join("generalist"))?
    } else {
        let generalist = Params::from_tensors(&base_tensors)?;
        let (general_tensors, loss) =
            ctx.run_phase(&generalist, &recipe.generalist, "generalist", None)?;
        models.push(("generalist".to_string(), opts.out.join("generalist"), loss));
        general_tensors
    };

    for group in recipe.specialists.chunks(opts.parallel.max(1)) {
        let results: Vec<Result<(String, f32)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = group
                .iter()
                .map(|(skill, phase)| {
                    let (ctx, general_tensors) = (&ctx, &general_tensors);
                    scope.spawn(move || {
                        let name = specialist_name(*skill);
                        let params = Params::from_tensors(general_tensors)?;
                        let teacher = ctx.teacher(general_tensors, phase)?;
                        let (_, loss) = ctx.run_phase(&params, phase, &name, teacher.as_ref())?;
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
        teacher: Option<&Twin>,
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
            teacher,
        )?;
        tracing::info!(
            "{name}: {} steps in {:.1} s, final loss {loss:.4}",
            phase.steps,
            started.elapsed().as_secs_f64()
        );
        let tensors = round_bf16(&params.snapshot()?)?;
        write_model(
            &self.opts.out.join(name),
            &self.recipe.shape,
            &tensors,
            self.shared,
            self.opts.force,
        )?;
        Ok((tensors, loss))
    }

    /// The frozen parent a phase that distills its replay learns from.
    fn teacher(&self, parent: &BTreeMap<String, Tensor>, phase: &Phase) -> Result<Option<Twin>> {
        if !phase.distills() {
            return Ok(None);
        }
        Ok(Some(Twin::new(
            &self.recipe.shape,
            &Params::from_tensors(parent)?,
        )?))
    }
}

/// The tensors as they read back from the bf16 file `write_model` writes.
fn round_bf16(tensors: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Tensor>> {
    let mut out = BTreeMap::new();
    for (name, t) in tensors {
        out.insert(name.clone(), t.to_dtype(DType::BF16)?.to_dtype(DType::F32)?);
    }
    Ok(out)
}

/// Which trunk models `out` already holds, trained from `recipe`'s seed, shape and phases.
#[derive(Debug, Clone, Copy, Default)]
struct Reuse {
    base: bool,
    generalist: bool,
}

fn reusable_trunk(out: &Path, recipe: &ZooRecipe) -> Reuse {
    let Ok(text) = std::fs::read_to_string(out.join("recipe.json")) else {
        return Reuse::default();
    };
    let Ok(old) = serde_json::from_str::<ZooRecipe>(&text) else {
        return Reuse::default();
    };
    let base = old.seed == recipe.seed
        && old.shape == recipe.shape
        && old.base == recipe.base
        && out.join("base/model.safetensors").is_file();
    let generalist = base
        && old.generalist == recipe.generalist
        && out.join("generalist/model.safetensors").is_file();
    Reuse { base, generalist }
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
