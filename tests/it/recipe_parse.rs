//! Valid recipes parse into what they mean: the Lamarck-14B-v0.3 recipe verbatim, stage
//! references and order, parameters written directly on slices, precedence.
use std::path::Path;

use lamarck::recipe::{Numeric, ParamValue, Recipe, TokenizerSource};
use lamarck::registry::Compat;

fn lamarck_recipe() -> Recipe {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("searches/lamarck-v0.3/recipe.yaml");
    Recipe::load(&path, None).unwrap()
}

#[test]
fn lamarck_recipe_is_the_model_card_recipe_byte_for_byte() {
    let ours = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("searches/lamarck-v0.3/recipe.yaml"),
    )
    .unwrap();
    // The team's shared folder sits beside the checkout (developers' machines and CI).
    let card = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/lamarck-v0.3/lamarck-14b-v0.3-recipe.yaml");
    if let Ok(theirs) = std::fs::read(card) {
        assert_eq!(ours, theirs);
    }
    assert_eq!(ours.len(), 5233, "the committed copy changed");
}

#[test]
fn lamarck_recipe_parses_into_five_stages_in_dependency_order() {
    let r = lamarck_recipe();
    let names: Vec<&str> = (0..r.stages.len()).map(|i| r.stage_name(i)).collect();
    assert_eq!(
        names,
        [
            "lamarck-14b-reason-della",
            "lamarck-14b-prose-della",
            "lamarck-14b-converge-della",
            "lamarck-14b-converge",
            "lamarck-14b-finalize"
        ]
    );
    let target = r.output_stage(None).unwrap();
    assert_eq!(r.stage_name(target), "lamarck-14b-finalize");
    let order: Vec<&str> = r
        .build_order(target)
        .unwrap()
        .into_iter()
        .map(|i| r.stage_name(i))
        .collect();
    assert_eq!(order, names, "file order is already a dependency order");
    // `sometimesanotion/lamarck-14b-reason-della` and `merges/...` mean stages.
    assert_eq!(r.dependencies(2), vec![0, 1]);
    assert_eq!(r.dependencies(3), vec![2]);
    assert_eq!(r.dependencies(4), vec![3]);
    assert_eq!(
        r.stage_for_reference("sometimesanotion/lamarck-14b-prose-model_stock"),
        None
    );
    // --stage picks an intermediate output and only what it needs.
    let converge = r.output_stage(Some("lamarck-14b-converge-della")).unwrap();
    assert_eq!(r.build_order(converge).unwrap(), vec![0, 1, 2]);
    assert!(r
        .output_stage(Some("lamarck-14b-converge-dela"))
        .unwrap_err()
        .to_string()
        .contains("did you mean `lamarck-14b-converge-della`"));
}

#[test]
fn lamarck_slerp_stage_takes_t_written_on_each_slice() {
    let r = lamarck_recipe();
    let s = &r.stages[3];
    assert_eq!(s.method.name, "slerp");
    assert_eq!(s.slices.len(), 7);
    assert_eq!(
        s.slices[0].parameters["t"],
        ParamValue::Plain(Numeric::Gradient(vec![0.0, 0.0]))
    );
    assert_eq!(
        s.slices[6].parameters["t"],
        ParamValue::Plain(Numeric::Gradient(vec![0.6, 0.4]))
    );
    assert_eq!(s.slices[2].sources[1].layer_range, Some([8, 16]));
    assert_eq!(s.tokenizer_source, Some(TokenizerSource::Base));
    let della = &r.stages[0];
    assert!(della.models_form);
    assert_eq!(
        della.tokenizer_source,
        Some(TokenizerSource::Model("arcee-ai/Virtuoso-Small".into()))
    );
    assert_eq!(
        della.parameters["int8_mask"],
        ParamValue::Plain(Numeric::Scalar(0.0)),
        "booleans become 0/1"
    );
    assert_eq!(della.compat, Compat::Mergekit);
}

#[test]
fn compat_from_recipe_key_and_override() {
    let text = "merge_method: della\ncompat: mergekit-2024\nseed: 7\nbase_model: b\nmodels:\n  - model: a\n    parameters: {weight: 1, density: 0.5, lambda: 0.9}\n";
    let r = Recipe::parse(text, Path::new("x.yaml"), None).unwrap();
    assert_eq!(
        (r.stages[0].compat, r.stages[0].seed),
        (Compat::Mergekit2024, Some(7))
    );
    // Under the current profile a per-model `lambda` is refused.
    let err = Recipe::parse(text, Path::new("x.yaml"), Some(Compat::Mergekit))
        .unwrap_err()
        .to_string();
    assert!(err.contains("models[0].parameters.lambda"), "{err}");
}

#[test]
fn stage_references_and_empty_documents() {
    let text = "---\nname: inner\nmerge_method: linear\nmodels:\n  - {model: a, parameters: {weight: 1}}\n---\n\
                merge_method: linear\nmodels:\n  - {model: org/inner, parameters: {weight: 1}}\n---\n# only a comment\n---\n";
    let r = Recipe::parse(text, Path::new("x.yaml"), None).unwrap();
    assert_eq!(r.stages.len(), 2);
    assert_eq!(r.stages[1].document, 2);
    assert_eq!(r.output_stage(None).unwrap(), 1);
    assert_eq!(r.build_order(1).unwrap(), vec![0, 1]);
}
