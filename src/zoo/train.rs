//! Training phases: batches of skill items, masked next-token loss, AdamW, a warmup +
//! cosine learning-rate schedule. Deterministic: data comes from `ZooRng` streams and the
//! twin's ops are deterministic on one thread.
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use indicatif::ProgressBar;
use tokenizers::Tokenizer;

use super::skills::{EvalSplits, Skill, TrainStream};
use super::tokenizer::{encode, endoftext_id};
use super::twin::{Params, Twin, ZooShape};
use super::Result;

/// One training phase (base pre-training, generalist or specialist fine-tuning).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// Also the label of the phase's data stream.
    pub name: String,
    /// Each row's skill is drawn uniformly from this list (a skill listed twice is drawn
    /// twice as often).
    pub skills: Vec<Skill>,
    pub steps: usize,
    pub batch_size: usize,
    pub peak_lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    /// Draw every item from the skills' easy range (`Skill::sample_in`).
    pub easy: bool,
    /// Skills replayed during the phase (a specialist's other skills), so it forgets little.
    pub replay_skills: Vec<Skill>,
    /// Fraction of the batch rows drawn from `replay_skills` (0 = none).
    pub replay_fraction: f64,
    /// Pre-training style: loss on every token of the item (raw text). Otherwise
    /// instruction style: loss on the answer and its newline only.
    pub loss_on_prompt: bool,
    /// Replay rows learn the parent's next-token distribution (teacher-forced on the
    /// item) instead of the item's answer: "Learning without Forgetting" (Li & Hoiem,
    /// 2016, arXiv:1606.09282). A replay row then only holds the specialist where its
    /// parent was, rather than teaching it the other skills again (ground-truth replay on
    /// a parent that has not learnt them gives every specialist the same update).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replay_distill: bool,
}

impl Phase {
    /// Whether the phase has replay rows scored against its parent (`replay_distill`).
    pub fn distills(&self) -> bool {
        self.replay_distill && self.replay_fraction > 0.0 && !self.replay_skills.is_empty()
    }

    /// Learning rate at `step`: linear warmup, then cosine decay to 10% of the peak.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = (self.steps - self.warmup_steps).max(1) as f64;
        let progress = (step - self.warmup_steps) as f64 / span;
        self.peak_lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
    }
}

/// A padded batch: inputs, next-token targets and 0/1 loss masks, all `[batch, len]`:
/// `mask` for positions scored against the target, `soft_mask` for replay positions scored
/// against the teacher (all zero unless the phase distills its replay).
struct Batch {
    inputs: Tensor,
    targets: Tensor,
    mask: Tensor,
    soft_mask: Tensor,
}

fn next_batch(phase: &Phase, stream: &mut TrainStream, tokenizer: &Tokenizer) -> Result<Batch> {
    // Each row: token ids and, per id, whether predicting it counts in the loss.
    let mut rows: Vec<(Vec<u32>, Vec<bool>, bool)> = Vec::with_capacity(phase.batch_size);
    for _ in 0..phase.batch_size {
        let (mut ids, mut scored) = (Vec::new(), Vec::new());
        let (skill, item) = stream.next_item();
        let soft = phase.distills() && phase.replay_skills.contains(&skill);
        let p = encode(tokenizer, &item.prompt)?;
        let a = encode(tokenizer, &format!("{}\n", item.answer))?;
        scored.extend(std::iter::repeat_n(phase.loss_on_prompt, p.len()));
        scored.extend(std::iter::repeat_n(true, a.len()));
        ids.extend(p);
        ids.extend(a);
        rows.push((ids, scored, soft));
    }
    let len = rows.iter().map(|(ids, _, _)| ids.len()).max().unwrap_or(2) - 1;
    let pad = endoftext_id();
    let (mut inputs, mut targets) = (Vec::new(), Vec::new());
    let (mut mask, mut soft_mask) = (Vec::new(), Vec::new());
    for (ids, scored, soft) in &rows {
        for p in 0..len {
            inputs.push(ids.get(p).copied().unwrap_or(pad));
            targets.push(ids.get(p + 1).copied().unwrap_or(pad));
            // The first token of a row is never predicted.
            let counted = if p + 1 < ids.len() && scored[p + 1] {
                1f32
            } else {
                0f32
            };
            let (hard, soft) = if *soft {
                (0.0, counted)
            } else {
                (counted, 0.0)
            };
            mask.push(hard);
            soft_mask.push(soft);
        }
    }
    let n = rows.len();
    Ok(Batch {
        inputs: Tensor::from_vec(inputs, (n, len), &Device::Cpu)?,
        targets: Tensor::from_vec(targets, (n, len), &Device::Cpu)?,
        mask: Tensor::from_vec(mask, (n, len), &Device::Cpu)?,
        soft_mask: Tensor::from_vec(soft_mask, (n, len), &Device::Cpu)?,
    })
}

/// Mean negative log-likelihood of the masked targets; with a teacher, replay positions
/// count the cross-entropy against the teacher's next-token distribution instead.
fn masked_loss(twin: &Twin, batch: &Batch, teacher: Option<&Twin>) -> Result<Tensor> {
    let logits = twin.forward(&batch.inputs)?;
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let picked = logp.gather(&batch.targets.unsqueeze(2)?, 2)?.squeeze(2)?;
    let mut total = (picked * &batch.mask)?.sum_all()?;
    let mut count = batch.mask.sum_all()?;
    if let Some(teacher) = teacher {
        let p = candle_nn::ops::softmax(&teacher.forward(&batch.inputs)?.detach(), D::Minus1)?;
        let soft = (p * &logp)?.sum(D::Minus1)?;
        total = (total + (soft * &batch.soft_mask)?.sum_all()?)?;
        count = (count + batch.soft_mask.sum_all()?)?;
    }
    Ok(total.neg()?.broadcast_div(&count.to_dtype(DType::F32)?)?)
}

/// Run `phase` on `params` in place; returns the mean loss of the last 10% of steps.
pub fn train(
    shape: &ZooShape,
    params: &Params,
    phase: &Phase,
    seed: u64,
    splits: &EvalSplits,
    tokenizer: &Tokenizer,
    progress: &ProgressBar,
    // The frozen parent, for a phase that `distills()` (its replay rows count only with it).
    teacher: Option<&Twin>,
) -> Result<f32> {
    let twin = Twin::new(shape, params)?;
    let mut stream = TrainStream::for_phase(seed, phase, splits);
    let opt_params = ParamsAdamW {
        lr: phase.lr_at(0),
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: phase.weight_decay,
    };
    let mut opt = AdamW::new(params.all_vars(), opt_params)?;
    let tail_start = phase.steps - (phase.steps / 10).max(1);
    let (mut tail_sum, mut tail_n) = (0f32, 0usize);
    for step in 0..phase.steps {
        opt.set_learning_rate(phase.lr_at(step));
        let batch = next_batch(phase, &mut stream, tokenizer)?;
        let loss = masked_loss(&twin, &batch, teacher)?;
        opt.backward_step(&loss)?;
        let value = loss.to_scalar::<f32>()?;
        if step >= tail_start {
            tail_sum += value;
            tail_n += 1;
        }
        progress.set_message(format!("{} loss {value:.3}", phase.name));
        progress.inc(1);
    }
    Ok(tail_sum / tail_n.max(1) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo::skills::EvalSplits;
    use crate::zoo::twin::{Params, Twin};
    use crate::zoo::{tokenizer, ZooRecipe};

    /// Largest absolute gradient of `loss` over every weight.
    fn max_grad(loss: &Tensor, params: &Params) -> f32 {
        let grads = loss.backward().unwrap();
        params
            .vars
            .values()
            .filter_map(|v| grads.get(v.as_tensor()))
            .map(|g| {
                g.abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            })
            .fold(0.0, f32::max)
    }

    /// Distilled replay holds a model where its parent is: on replay rows, a student equal to
    /// its teacher gets (up to rounding) no gradient, while the same rows scored against
    /// their answers (ground-truth replay) pull it toward the replayed skills.
    #[test]
    fn distilled_replay_rows_do_not_move_a_model_equal_to_its_teacher() {
        let recipe = ZooRecipe::standard(1, 0.01);
        let (skill, spec) = recipe.specialists[0].clone();
        let phase = Phase {
            replay_fraction: 1.0,
            ..spec
        };
        let splits = EvalSplits::generate(1, 8, 8);
        let tok = tokenizer::build().unwrap();
        let params = Params::init(&recipe.shape, 1).unwrap();
        let twin = Twin::new(&recipe.shape, &params).unwrap();
        let teacher_params = Params::from_tensors(&params.snapshot().unwrap()).unwrap();
        let teacher = Twin::new(&recipe.shape, &teacher_params).unwrap();
        let mut stream = TrainStream::for_phase(1, &phase, &splits);
        let batch = next_batch(&phase, &mut stream, &tok).unwrap();
        // Every row is a replay row of another skill.
        assert!(phase.replay_skills.iter().all(|s| *s != skill));
        assert_eq!(
            batch.mask.sum_all().unwrap().to_scalar::<f32>().unwrap(),
            0.0
        );

        let distilled = max_grad(
            &masked_loss(&twin, &batch, Some(&teacher)).unwrap(),
            &params,
        );
        let hard = Batch {
            inputs: batch.inputs.clone(),
            targets: batch.targets.clone(),
            mask: batch.soft_mask.clone(),
            soft_mask: batch.mask.clone(),
        };
        let ground_truth = max_grad(&masked_loss(&twin, &hard, None).unwrap(), &params);
        assert!(distilled < 1e-6, "distilled replay gradient {distilled}");
        assert!(
            ground_truth > 1e-3,
            "ground-truth replay gradient {ground_truth}"
        );
    }
}
