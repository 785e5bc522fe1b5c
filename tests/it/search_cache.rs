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
    assert_eq!(t.rebuilt.len(), 2, "{:?}", t.rebuilt);
    assert_eq!(
        t.rebuilt[0], "blend",
        "the SLERP stage, then the final TIES stage"
    );
    assert!(!t.rebuilt.iter().any(|s| s == "branch"));
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

/// Stage outputs beyond `--cache-mem` spill to the disk cache as `<hash>.safetensors`; the
/// merged weights are bit-identical to the all-in-memory run, a later process (a resumed
/// run) re-uses the files, a broken file is removed and rebuilt, and `--cache-disk` bounds
/// the folder.
#[test]
fn spilled_stages_give_the_same_weights_and_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = SearchSpec::load(&search_file(tmp.path(), 5, "")).unwrap();
    let genome = Genome::new(&spec.genes, &spec.recipe_text).unwrap();
    let recipe = |v: &[f64]| genome.recipe(v, None, true).unwrap().1;
    let start = genome.start.clone();
    let mut slerp_only = start.clone();
    slerp_only[4] = 0.9;
    let mut della_too = start.clone();
    della_too[0] = 0.3;
    let points = [&start, &slerp_only, &della_too, &start, &slerp_only];

    let mut memory = Materializer::new(None, 1 << 30, 1, None);
    let want: Vec<String> = points
        .iter()
        .map(|p| memory.materialize(&recipe(p)).unwrap().hash)
        .collect();

    let cache = tmp.path().join("stage-cache");
    let mut disk = Materializer::new(None, 1, 1, None)
        .with_disk_cache(&cache, 1 << 30)
        .unwrap();
    let got: Vec<_> = points
        .iter()
        .map(|p| disk.materialize(&recipe(p)).unwrap())
        .collect();
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(&g.hash, w, "spilled stages change no weight");
    }
    assert_eq!(
        disk.cached_bytes(),
        0,
        "nothing kept in memory under a 1-byte budget"
    );
    let stats = disk.cache_stats();
    assert!(stats.spilled >= 6, "{stats:?}");
    // the fourth point is the first again: every stage comes back from disk
    assert_eq!((got[3].stages_run, got[3].stages_reused), (0, 3));
    let files = |d: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let names = files(&cache);
    assert!(
        names
            .iter()
            .all(|n| n.len() == 64 + ".safetensors".len() && n.ends_with(".safetensors")),
        "{names:?}"
    );
    assert_eq!(
        disk.disk_bytes(),
        names
            .iter()
            .map(|n| std::fs::metadata(cache.join(n)).unwrap().len())
            .sum::<u64>()
            - names
                .iter()
                .map(|n| header_bytes(&cache.join(n)))
                .sum::<u64>()
    );
    drop(got);
    drop(disk);

    // a restarted process finds the files; a truncated one is removed and merged again
    let victim = cache.join(&names[0]);
    let len = std::fs::metadata(&victim).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap();
    f.set_len(len - 1).unwrap();
    drop(f);
    std::fs::write(
        cache.join(format!(".{}.lamarck-tmp-99999", "0".repeat(64))),
        b"partial",
    )
    .unwrap();
    let mut again = Materializer::new(None, 1, 1, None)
        .with_disk_cache(&cache, 1 << 30)
        .unwrap();
    assert!(
        !files(&cache).iter().any(|n| n.starts_with('.')),
        "temporary files removed"
    );
    assert!(!victim.exists(), "the truncated file is not trusted");
    let m = again.materialize(&recipe(&slerp_only)).unwrap();
    assert_eq!(m.hash, want[1]);
    assert!(
        m.stages_reused >= 1,
        "stages re-used from the previous process's files"
    );

    // a disk budget of one stage keeps at most one file
    let one = std::fs::metadata(cache.join(&files(&cache)[0]))
        .unwrap()
        .len();
    let small = tmp.path().join("small-cache");
    let mut bounded = Materializer::new(None, 1, 1, None)
        .with_disk_cache(&small, one)
        .unwrap();
    let b = bounded.materialize(&recipe(&della_too)).unwrap();
    assert_eq!(b.hash, want[2]);
    assert!(bounded.disk_bytes() <= one);
    assert!(files(&small).len() <= 1);
}

/// The safetensors header's size (8-byte length + JSON).
fn header_bytes(path: &std::path::Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    8 + u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

/// A stage larger than `--cache-mem` is never built in memory: it is streamed into its
/// disk cache file as it is merged (the cache never holds it in RAM, not even for a
/// moment), and the weights are those of the all-in-memory run.
#[test]
fn stages_larger_than_the_memory_budget_are_streamed_to_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = SearchSpec::load(&search_file(tmp.path(), 5, "")).unwrap();
    let genome = Genome::new(&spec.genes, &spec.recipe_text).unwrap();
    let recipe = |v: &[f64]| genome.recipe(v, None, true).unwrap().1;
    let start = genome.start.clone();
    let mut slerp_only = start.clone();
    slerp_only[4] = 0.9;
    let points = [&start, &slerp_only, &start];

    let mut memory = Materializer::new(None, 1 << 30, 1, None);
    let want: Vec<(String, u64)> = points
        .iter()
        .map(|p| {
            let m = memory.materialize(&recipe(p)).unwrap();
            (m.hash, m.output.bytes)
        })
        .collect();
    assert_eq!(
        memory.cache_stats().streamed,
        0,
        "everything fits: no streaming"
    );

    // a budget below every stage output: each merged stage goes straight to disk
    let smallest = want.iter().map(|w| w.1).min().unwrap();
    let cache = tmp.path().join("stage-cache");
    let mut disk = Materializer::new(None, smallest / 4, 1, None)
        .with_disk_cache(&cache, 1 << 30)
        .unwrap();
    let mut built = 0;
    for (p, (hash, _)) in points.iter().zip(&want) {
        let m = disk.materialize(&recipe(p)).unwrap();
        assert_eq!(&m.hash, hash, "streamed stages change no weight");
        assert!(
            matches!(
                m.output.tensors,
                lamarck::search::stage_cache::Held::Disk(_)
            ),
            "the candidate is read from its mapped file"
        );
        built += m.stages_run;
    }
    let stats = disk.cache_stats();
    assert_eq!(
        built, 5,
        "3 stages, then SLERP and TIES again, then all reused"
    );
    assert_eq!(stats.streamed, 5, "{stats:?}");
    assert_eq!(
        stats.peak_mem, 0,
        "no stage was ever held in memory: {stats:?}"
    );
    assert!(stats.disk_hits >= 2, "{stats:?}");
    let leftovers: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary folders removed: {leftovers:?}"
    );
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 5);

    // without a disk cache there is nowhere to stream to: built in memory, not kept
    let mut nowhere = Materializer::new(None, smallest / 4, 1, None);
    let m = nowhere.materialize(&recipe(&start)).unwrap();
    assert_eq!(m.hash, want[0].0);
    assert_eq!(nowhere.cache_stats().streamed, 0);
}
