//! `lamarck evolve --dry-run` on the shipped Lamarck-v0.3 search, with header-only 14B
//! stand-ins for its nine models: genes validated against the real recipe, five stages
//! planned, the search space and per-candidate cost printed, nothing written.
use crate::support::cmd::lamarck_in;
use crate::support::merge::lamarck_v03_headers;
use crate::support::repo;

#[test]
fn lamarck_v0_3_search_passes_dry_run_on_14b_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let map = lamarck_v03_headers(tmp.path(), &tmp.path().join("map.yaml"));
    let search = repo().join("searches/lamarck-v0.3.yaml");
    let (ok, out, err) = lamarck_in(
        &[
            "evolve",
            search.to_str().unwrap(),
            "--dry-run",
            "--model-map",
            map.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(ok, "{err}");
    if std::env::var_os("LAMARCK_SHOW").is_some() {
        eprintln!("{out}");
    }
    for needle in [
        "search space: 28 gene(s)",
        "reason_evolmerge_density",
        "at models[0].parameters.density",
        "t_layer16",
        "at slices[2].t[1]",
        "population 13",
        "`lamarck-14b-reason-della` (della): 579 tensors",
        "`lamarck-14b-converge` (slerp)",
        "`lamarck-14b-finalize` (ties)",
        "per candidate",
        "14.77 B-parameter model",
        // which genes force each stage to be merged again: its own and its inputs'
        "depends on 8 gene(s) (own 8, upstream 0)",
        "depends on 22 gene(s) (own 8, upstream 14)",
        "depends on 28 gene(s) (own 0, upstream 28)",
        "5 of 5 stage(s) merged",
        "merge seconds per candidate: ~",
        "peak disk ≤",
    ] {
        assert!(out.contains(needle), "dry run lacks {needle:?}:\n{out}");
    }
    // nothing written next to the search or in the working folder
    assert!(!tmp.path().join("results").exists());
}

#[test]
fn dry_run_refuses_a_gene_that_names_no_place_in_the_recipe() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("searches/lamarck-v0.3.yaml"))
        .unwrap()
        .replace(
            "models[2].parameters.density",
            "models[3].parameters.density",
        )
        .replace(
            "recipe: lamarck-v0.3/recipe.yaml",
            &format!(
                "recipe: {}",
                repo().join("searches/lamarck-v0.3/recipe.yaml").display()
            ),
        );
    let search = tmp.path().join("bad.yaml");
    std::fs::write(&search, text).unwrap();
    let (ok, _, err) = lamarck_in(
        &["evolve", search.to_str().unwrap(), "--dry-run"],
        tmp.path(),
    );
    assert!(!ok);
    assert!(
        err.contains("gene `reason_wernicke_density`") && err.contains("no [3]"),
        "{err}"
    );
}

#[test]
fn zoo_demo_search_validates_and_plans_when_the_zoo_is_present() {
    let file = repo().join("searches/zoo-lamarck.yaml");
    let spec = lamarck::search::SearchSpec::load(&file).unwrap();
    let genome = lamarck::search::genes::Genome::new(&spec.genes, &spec.recipe_text).unwrap();
    let (_, recipe) = genome.recipe(&genome.start, spec.compat, true).unwrap();
    assert_eq!(recipe.stages.len(), 5);
    assert_eq!(genome.len(), 14);
    if repo().join("zoo/generalist/config.json").is_file() {
        let (ok, out, err) = lamarck_in(&["evolve", file.to_str().unwrap(), "--dry-run"], &repo());
        assert!(ok, "{err}");
        assert!(
            out.contains("search space: 14 gene(s)") && !out.contains("NOT READY"),
            "{out}"
        );
    }
}
