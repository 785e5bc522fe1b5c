//! The Lamarck-14B-v0.3 recipe, unedited (issue 3 item 4): dry-run on 14B-shaped
//! header-only stand-ins, and a real run on 48-layer tiny stand-ins checked for what the
//! recipe means.
use std::path::{Path, PathBuf};

use crate::support::cmd::lamarck;
use crate::support::merge::{
    lamarck_v03_headers, write_model, write_model_map, Shape, LAMARCK_V03_IDS,
};
use crate::support::s;
use crate::support::tensors::{max_bf16_ulps, read_tensors};

fn recipe() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("searches/lamarck-v0.3/recipe.yaml")
}

#[test]
fn dry_run_on_14b_shaped_headers_prints_the_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let map = lamarck_v03_headers(tmp.path(), &tmp.path().join("map.yaml"));
    let out = tmp.path().join("final");
    let (ok, stdout, err) = lamarck(&[
        "merge",
        s(&recipe()),
        "--out",
        s(&out),
        "--model-map",
        s(&map),
        "--dry-run",
    ]);
    assert!(ok, "{err}");
    for needle in [
        "5 stage(s)",
        "stage 1 of 5: `lamarck-14b-reason-della` (della)",
        "stage 4 of 5: `lamarck-14b-converge` (slerp)",
        "merges/lamarck-14b-converge-della -> output of stage `lamarck-14b-converge-della`",
        "stage 5 of 5: `lamarck-14b-finalize` (ties)",
        "output tensors: 579 (48 layers)",
        // 14.77 B parameters in bf16; the finalize stage reads two of them (base + converge).
        "write: 27.51 GiB",
    ] {
        assert!(stdout.contains(needle), "plan lacks {needle:?}:\n{stdout}");
    }
    assert!(
        !out.exists() && !tmp.path().join("final.stages").exists(),
        "a dry run wrote something"
    );
}

#[test]
fn runs_verbatim_on_tiny_48_layer_stand_ins() {
    let tmp = tempfile::tempdir().unwrap();
    let mut entries = Vec::new();
    for (i, id) in LAMARCK_V03_IDS.iter().enumerate() {
        let dir = tmp.path().join(id.replace('/', "--"));
        // One shared "pretrained" model; every other model is a fine-tune of it.
        let delta = if i == 0 { None } else { Some(100 + i as u64) };
        write_model(&dir, Shape::tiny(48), 7, delta, 0.02);
        entries.push((*id, dir));
    }
    let map = tmp.path().join("map.yaml");
    write_model_map(&map, &entries);
    let out = tmp.path().join("final");
    let (ok, _, err) = lamarck(&[
        "merge",
        s(&recipe()),
        "--out",
        s(&out),
        "--model-map",
        s(&map),
        "--compat",
        "mergekit-2024",
    ]);
    assert!(ok, "{err}");
    let fin = read_tensors(&out);
    let virtuoso = read_tensors(&entries[1].1);
    let qwen = read_tensors(&entries[0].1);
    let converge = read_tensors(&tmp.path().join("final.stages/lamarck-14b-converge"));
    assert_eq!(fin.len(), 1 + 48 * 12 + 2);
    for (name, (shape, data)) in &fin {
        // The final TIES (one model, density 1, weight 1) returns its input.
        assert_eq!(shape, &converge[name].0);
        // Under `dtype: bfloat16` the task vector x − B is rounded to bf16 (as mergekit
        // computes it), so the error bound scales with |x − B| as well as |x|.
        let (x, base) = (&converge[name].1, &qwen[name].1);
        for ((o, x), b) in data.iter().zip(x).zip(base) {
            let bound = ((x - b).abs() + x.abs()) * 2f32.powi(-8) + 1e-30;
            assert!(
                (o - x).abs() <= bound,
                "{name}: finalize gives {o}, its input is {x} (base {b})"
            );
        }
        let layer: Option<usize> = name
            .strip_prefix("model.layers.")
            .and_then(|r| r.split('.').next())
            .and_then(|n| n.parse().ok());
        let v = &virtuoso[name].1;
        // Elements further from Virtuoso than the final TIES' bf16 rounding allows.
        let off = data
            .iter()
            .zip(v)
            .zip(base)
            .filter(|((o, v), b)| {
                (*o - *v).abs() > ((*v - *b).abs() + v.abs()) * 2f32.powi(-8) + 1e-30
            })
            .count();
        match layer {
            // t = 0 on layers 0–1 (slice `t: [0, 0]`) and on layer 2, the first layer of the
            // slice with `t: [0.00, 0.60]`: the slerp stage returns Virtuoso exactly...
            Some(0..=2) => {
                let ulps = max_bf16_ulps(&converge[name].1, v);
                assert!(
                    ulps <= 1.0,
                    "{name}: the slerp stage is {ulps} ulps from Virtuoso"
                );
                // ...and the final model is Virtuoso up to that rounding.
                assert_eq!(off, 0, "{name}: {off} elements differ from Virtuoso");
            }
            // Later layers blend in the DELLA chain. Norm weights (≈ 1) move by less than a
            // bf16 step in places, so only matrices must differ in most elements.
            Some(_) => {
                let most = if shape.len() == 2 { data.len() / 2 } else { 0 };
                assert!(
                    off > most,
                    "{name}: only {off} of {} elements differ from Virtuoso",
                    data.len()
                );
            }
            None => {}
        }
    }
    let embed = "model.embed_tokens.weight";
    assert!(
        max_bf16_ulps(&converge[embed].1, &virtuoso[embed].1) <= 1.0,
        "embeddings use t = 0"
    );
    // `tokenizer_source: Qwen/Qwen2.5-14B-Instruct` on the final stage.
    let tok = std::fs::read_to_string(out.join("tokenizer_config.json")).unwrap();
    assert!(tok.contains("Qwen--Qwen2.5-14B-Instruct"), "{tok}");
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        card.contains("mergekit-2024") && card.contains("- Qwen/Qwen2.5-14B\n"),
        "{card}"
    );
}
