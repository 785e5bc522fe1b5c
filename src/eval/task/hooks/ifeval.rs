//! IFEval's `utils.process_results` (lm-eval's `ifeval` task): the instruction checkers of
//! [`crate::eval::ifeval`] on one response, as lm-eval's four metrics. Prompt-level metrics
//! are one verdict per prompt; instruction-level ones are one verdict per instruction, which
//! `utils.agg_inst_level_acc` averages over all instructions of all prompts.
use std::collections::BTreeMap;

use serde_json::Value;

use super::{HookResult, Results, Score};

pub fn process_results(doc: &Value, results: Results) -> HookResult<BTreeMap<String, Score>> {
    let Results::Generation(response) = results else {
        return Err(
            "utils.process_results (IFEval) scores generations (output_type: generate_until)"
                .into(),
        );
    };
    let v = crate::eval::ifeval::check(doc, response).map_err(|e| e.to_string())?;
    let one = |b: bool| Score::One(f64::from(u8::from(b)));
    let many = |bs: &[bool]| Score::Many(bs.iter().map(|&b| f64::from(u8::from(b))).collect());
    Ok(BTreeMap::from([
        (
            "prompt_level_strict_acc".into(),
            one(v.prompt_level_strict()),
        ),
        ("inst_level_strict_acc".into(), many(&v.strict)),
        ("prompt_level_loose_acc".into(), one(v.prompt_level_loose())),
        ("inst_level_loose_acc".into(), many(&v.loose)),
    ]))
}
