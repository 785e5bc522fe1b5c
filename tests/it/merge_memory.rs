//! The in-memory sink (used by the search to materialize candidates without disk) gives
//! exactly what `lamarck merge` writes: same planner, same runner, only the sink differs.
use crate::support::cmd::lamarck;
use crate::support::merge::{merge_in_memory, write_model, write_model_map, Shape};
use crate::support::tensors::read_tensors;
use lamarck::merge::run::RunOptions;
use lamarck::recipe::Recipe;

#[test]
fn memory_sink_equals_the_written_folder() {
    let tmp = tempfile::tempdir().unwrap();
    write_model(&tmp.path().join("a"), Shape::tiny(3), 1, None, 0.0);
    write_model(&tmp.path().join("b"), Shape::tiny(3), 1, Some(2), 0.05);
    write_model(&tmp.path().join("c"), Shape::tiny(3), 1, Some(3), 0.05);
    let map = tmp.path().join("map.yaml");
    write_model_map(
        &map,
        &[
            ("a", tmp.path().join("a")),
            ("b", tmp.path().join("b")),
            ("c", tmp.path().join("c")),
        ],
    );
    let text = "merge_method: dare_ties\nbase_model: a\ndtype: bfloat16\nseed: 11\nparameters: {density: 0.6, weight: [1.0, 0.5], normalize: true}\nmodels:\n  - model: b\n  - model: c\n";
    let recipe_path = tmp.path().join("r.yaml");
    std::fs::write(&recipe_path, text).unwrap();
    let out = tmp.path().join("out");
    let (ok, _, err) = lamarck(&[
        "merge",
        recipe_path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--model-map",
        map.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");

    let sink = merge_in_memory(
        tmp.path(),
        text,
        None,
        11,
        &RunOptions {
            threads: 2,
            progress: false,
            ..RunOptions::default()
        },
    );

    let written = read_tensors(&out);
    assert_eq!(sink.tensors.len(), written.len());
    for (name, (shape, _, _)) in &sink.tensors {
        let data = sink.f32(name).unwrap();
        assert_eq!(
            (shape, &data),
            (&written[name].0, &written[name].1),
            "{name}"
        );
    }
}

#[test]
fn a_multi_stage_recipe_materializes_in_memory_as_on_disk() {
    use lamarck::model::ModelMap;
    use lamarck::search::materialize::Materializer;
    let tmp = tempfile::tempdir().unwrap();
    write_model(&tmp.path().join("a"), Shape::tiny(4), 1, None, 0.0);
    write_model(&tmp.path().join("b"), Shape::tiny(4), 1, Some(2), 0.05);
    let map = tmp.path().join("map.yaml");
    write_model_map(
        &map,
        &[
            ("org/a", tmp.path().join("a")),
            ("org/b", tmp.path().join("b")),
        ],
    );
    let text = "name: mid\nmerge_method: della\nbase_model: org/a\nparameters: {density: 0.5, epsilon: 0.1, weight: 1.0}\nmodels:\n  - model: org/b\n---\n\
                merge_method: slerp\nbase_model: org/a\nparameters: {t: [0.2, 0.8]}\nslices:\n  - sources: [{model: org/a, layer_range: [0, 3]}, {model: merges/mid, layer_range: [1, 4]}]\n";
    let recipe_path = tmp.path().join("r.yaml");
    std::fs::write(&recipe_path, text).unwrap();
    let out = tmp.path().join("out");
    let (ok, _, err) = lamarck(&[
        "merge",
        recipe_path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--model-map",
        map.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");

    // The search's in-memory store, through the same executor as `lamarck merge`.
    let recipe = Recipe::parse(text, &recipe_path, None).unwrap();
    let model_map = ModelMap::load(&map).unwrap();
    let mut mat = Materializer::new(Some(model_map), 1 << 30, 1, None);
    let done = mat.materialize(&recipe).unwrap();
    assert_eq!((done.stages_run, done.stages_reused), (2, 0));
    let held = &done.output.tensors;
    let written = read_tensors(&out);
    assert_eq!(held.names().len(), written.len());
    for name in held.names() {
        let shape = held.raw(name).unwrap().0.to_vec();
        let data = done.output.f32(name).unwrap();
        assert_eq!(
            (&shape, &data),
            (&written[name].0, &written[name].1),
            "{name}"
        );
    }
}
