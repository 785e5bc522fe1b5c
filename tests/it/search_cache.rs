//! The stage cache: a candidate that changes only the SLERP genes re-merges only the SLERP
//! stage and what follows; the DELLA stage comes from memory, with identical weights.
use crate::support::search::search_file;
use lamarck::search::genes::Genome;
use lamarck::search::materialize::Materializer;
use lamarck::search::SearchSpec;

#[test]
fn only_stages_downstream_of_a_changed_gene_are_merged_again() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = SearchSpec::load(&search_file(tmp.path(), 5, "")).unwrap();
    let genome = Genome::new(&spec.genes, &spec.recipe_text).unwrap();
    let recipe = |v: &[f64]| genome.recipe(v, None, true).unwrap().1;
    let start = genome.start.clone(); // a_density, b_weight, epsilon, t_mid, t_end
    let mut slerp_only = start.clone();
    slerp_only[4] = 0.9;
    let mut della_too = start.clone();
    della_too[0] = 0.3;

    let mut mat = Materializer::new(None, 1 << 30, 1, None);
    let first = mat.materialize(&recipe(&start)).unwrap();
    assert_eq!((first.stages_run, first.stages_reused), (3, 0));
    let again = mat.materialize(&recipe(&start)).unwrap();
    assert_eq!((again.stages_run, again.stages_reused), (0, 3));
    assert_eq!(again.hash, first.hash);
    let t = mat.materialize(&recipe(&slerp_only)).unwrap();
    assert_eq!(
        (t.stages_run, t.stages_reused),
        (2, 1),
        "DELLA stage reused, SLERP and TIES merged"
    );
    assert_ne!(t.hash, first.hash);
    let d = mat.materialize(&recipe(&della_too)).unwrap();
    assert_eq!((d.stages_run, d.stages_reused), (3, 0));

    // the same candidate without a cache: same weights, everything merged
    let mut cold = Materializer::new(None, 0, 1, None);
    let t_cold = cold.materialize(&recipe(&slerp_only)).unwrap();
    assert_eq!(t_cold.hash, t.hash);
    assert_eq!((t_cold.stages_run, t_cold.stages_reused), (3, 0));
    assert_eq!(cold.cached_bytes(), 0);
    // a budget below one stage output keeps nothing either; one above keeps the newest
    let one_stage = first.output.bytes;
    let mut small = Materializer::new(None, one_stage, 1, None);
    small.materialize(&recipe(&start)).unwrap();
    assert!(small.cached_bytes() <= one_stage);
}
