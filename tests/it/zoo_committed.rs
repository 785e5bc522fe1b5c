//! The committed zoo (`zoo/`, `evals/zoo/`) is what the code builds, and it has the
//! property the zoo exists for: each specialist is strictly the best model on its own skill
//! (so, with four skills, no model is best on all of them).
use std::path::Path;

use candle_core::{DType, Device};
use lamarck::eval::run::{evaluate_task, EvalOptions};
use lamarck::eval::task::TaskSpec;
use lamarck::eval::{Qwen2Lm, TextTokenizer};
use lamarck::zoo::build::{specialist_name, write_tasks};
use lamarck::zoo::skills::{EvalSplits, DEV_ITEMS, TEST_ITEMS};
use lamarck::zoo::{Skill, ZooRecipe};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn committed_recipe_is_the_shipped_recipe() {
    let committed = std::fs::read_to_string(Path::new(ROOT).join("zoo/recipe.json")).unwrap();
    let shipped = serde_json::to_string_pretty(&ZooRecipe::standard(1, 1.0)).unwrap() + "\n";
    assert_eq!(
        committed, shipped,
        "zoo/recipe.json differs from ZooRecipe::standard(1, 1.0): rebuild the zoo"
    );
}

#[test]
fn committed_tasks_are_what_seed_1_generates() {
    let dir = tempfile::tempdir().unwrap();
    write_tasks(dir.path(), &EvalSplits::generate(1, DEV_ITEMS, TEST_ITEMS)).unwrap();
    for skill in Skill::ALL {
        for file in [
            format!("{}.yaml", skill.name()),
            format!("{0}/dev.jsonl", skill.name()),
            format!("{0}/test.jsonl", skill.name()),
        ] {
            let committed = std::fs::read(Path::new(ROOT).join("evals/zoo").join(&file)).unwrap();
            let fresh = std::fs::read(dir.path().join(&file)).unwrap();
            assert!(
                committed == fresh,
                "evals/zoo/{file} differs from what seed 1 generates"
            );
        }
    }
}

#[test]
fn each_specialist_leads_on_its_own_skill() {
    let zoo = Path::new(ROOT).join("zoo");
    let mut names = vec!["base".to_string(), "generalist".to_string()];
    names.extend(Skill::ALL.iter().map(|s| specialist_name(*s)));
    let tasks: Vec<TaskSpec> = Skill::ALL
        .iter()
        .map(|s| {
            TaskSpec::from_file(&Path::new(ROOT).join(format!("evals/zoo/{}.yaml", s.name())))
                .unwrap()
        })
        .collect();
    let opts = EvalOptions {
        split: Some("test".into()),
        batch_size: 32,
        ..EvalOptions::default()
    };
    // scores[model][skill]: exact match on the test split, as `lamarck eval` scores it.
    let mut scores = Vec::new();
    for name in &names {
        let dir = zoo.join(name);
        let mut lm = Qwen2Lm::from_dir(&dir, DType::F32, &Device::Cpu).unwrap();
        let tok = TextTokenizer::from_dir(&dir).unwrap();
        let row: Vec<f64> = tasks
            .iter()
            .map(|task| {
                let (result, _) = evaluate_task(&mut lm, &tok, task, &opts).unwrap();
                result.metrics[&result.metric_order[0]].value
            })
            .collect();
        scores.push(row);
    }
    for (k, skill) in Skill::ALL.iter().enumerate() {
        let own = scores[2 + k][k];
        for (m, name) in names.iter().enumerate() {
            if m != 2 + k {
                assert!(
                    own > scores[m][k],
                    "{skill:?}: specialist {own} vs {name} {}",
                    scores[m][k]
                );
            }
        }
    }
}
