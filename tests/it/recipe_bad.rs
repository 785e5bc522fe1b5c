//! Every broken recipe in `tests/bad/*.yaml` that has `# expect:` lines is refused by the
//! library (no models needed) with a message containing each of them (what is wrong,
//! where, and what to do). The other cases there (search files, task files, recipes that
//! need models) are run through the binary by `bad_inputs`.
use std::path::Path;

use lamarck::recipe::Recipe;

/// Parse, pick the output stage and order the stages: the checks that need no models.
fn check(path: &Path) -> Result<(), String> {
    let recipe = Recipe::load(path, None).map_err(|e| e.to_string())?;
    let target = recipe.output_stage(None).map_err(|e| e.to_string())?;
    recipe.build_order(target).map_err(|e| e.to_string())?;
    Ok(())
}

#[test]
fn every_bad_recipe_is_refused_with_its_expected_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &cases {
        let text = std::fs::read_to_string(case).unwrap();
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        if expected.is_empty() {
            continue;
        }
        checked += 1;
        match check(case) {
            Ok(()) => failures.push(format!("{}: accepted", case.display())),
            Err(message) => {
                assert!(
                    message.contains(&*case.to_string_lossy()),
                    "{}: message does not name the file: {message}",
                    case.display()
                );
                for e in expected {
                    if !message.contains(e) {
                        failures.push(format!(
                            "{}: message lacks {e:?}:\n    {message}",
                            case.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(checked >= 15, "only {checked} cases with `# expect:` lines");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
