//! Genes as places in the recipe: a gene's value is written into the YAML documents of the
//! recipe (every tied place gets the same number) and the result is rendered back to
//! multi-document text, which `Recipe::parse` validates like any hand-written recipe.
//!
//! Working on the YAML rather than on parsed stages keeps one representation for the
//! search, the stage cache key (the rendered document) and `lamarck export`.
use serde_yaml_ng::{Mapping, Value};

use super::spec::GeneSpec;
use super::{Error, Result};
use crate::recipe::Recipe;
use crate::registry::Compat;

/// One step of a place path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
    /// `[*]`: every element (a tie across slices or models).
    All,
}

/// Parse `slices[*].sources[1].parameters.t[2]`.
fn parse_path(path: &str) -> std::result::Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if key.is_empty() && steps.is_empty() {
            return Err(format!("`{path}` must start with a key"));
        }
        if !key.is_empty() {
            steps.push(Step::Key(key.to_string()));
        }
        while !rest.is_empty() {
            let close = rest
                .find(']')
                .filter(|_| rest.starts_with('['))
                .ok_or_else(|| format!("`{path}`: unbalanced `[...]`"))?;
            let inner = &rest[1..close];
            steps.push(if inner == "*" {
                Step::All
            } else {
                Step::Index(
                    inner
                        .parse()
                        .map_err(|_| format!("`{path}`: `[{inner}]` is not an index or `*`"))?,
                )
            });
            rest = &rest[close + 1..];
        }
    }
    if steps.is_empty() {
        return Err("empty path".into());
    }
    Ok(steps)
}

/// The number slots a path reaches in `doc`, expanded over `[*]`. A missing last key of an
/// existing mapping (and a missing `parameters:` mapping on the way) is created when
/// `create` is set.
fn visit<'v>(
    v: &'v mut Value,
    steps: &[Step],
    create: bool,
    out: &mut Vec<&'v mut Value>,
    trail: &str,
) -> std::result::Result<(), String> {
    let Some((first, rest)) = steps.split_first() else {
        out.push(v);
        return Ok(());
    };
    match first {
        Step::Key(k) => {
            let here = format!("{trail}{}{k}", if trail.is_empty() { "" } else { "." });
            if v.is_null() && create {
                *v = Value::Mapping(Mapping::new());
            }
            let map = v
                .as_mapping_mut()
                .ok_or_else(|| format!("`{trail}` is not a mapping, cannot take `{k}`"))?;
            let key = Value::String(k.clone());
            if !map.contains_key(&key) {
                let may_create = create && (rest.is_empty() || (k == "parameters"));
                if !may_create {
                    return Err(if create {
                        format!("nothing at `{here}`")
                    } else {
                        format!("nothing at `{here}`; give the gene a `start:` to add the value")
                    });
                }
                map.insert(
                    key.clone(),
                    if rest.is_empty() {
                        Value::Null
                    } else {
                        Value::Mapping(Mapping::new())
                    },
                );
            }
            let next = map
                .get_mut(&key)
                .ok_or_else(|| format!("nothing at `{here}`"))?;
            visit(next, rest, create, out, &here)
        }
        Step::Index(i) => {
            let seq = v
                .as_sequence_mut()
                .ok_or_else(|| format!("`{trail}` is not a list, cannot take [{i}]"))?;
            let n = seq.len();
            let next = seq
                .get_mut(*i)
                .ok_or_else(|| format!("`{trail}` has {n} entries, no [{i}]"))?;
            visit(next, rest, create, out, &format!("{trail}[{i}]"))
        }
        Step::All => {
            let seq = v
                .as_sequence_mut()
                .ok_or_else(|| format!("`{trail}` is not a list, cannot take [*]"))?;
            if seq.is_empty() {
                return Err(format!("`{trail}` is an empty list"));
            }
            for (i, item) in seq.iter_mut().enumerate() {
                visit(item, rest, create, out, &format!("{trail}[{i}]"))?;
            }
            Ok(())
        }
    }
}

/// The recipe's documents as YAML values, with the stage name of each.
#[derive(Debug, Clone)]
pub struct RecipeDocs {
    pub docs: Vec<Value>,
}

/// Genes bound to a recipe: validated places and start values.
#[derive(Debug, Clone)]
pub struct Genome {
    pub genes: Vec<GeneSpec>,
    /// Start value of each gene (its `start:`, else the value written in the recipe).
    pub start: Vec<f64>,
    /// Document index of each gene's stage.
    doc_of: Vec<usize>,
    base: RecipeDocs,
}

impl RecipeDocs {
    pub fn parse(text: &str) -> Result<RecipeDocs> {
        use serde::Deserialize;
        let mut docs = Vec::new();
        for d in serde_yaml_ng::Deserializer::from_str(text) {
            let v = Value::deserialize(d)
                .map_err(|e| Error::Invalid(format!("recipe: not valid YAML: {e}")))?;
            if !v.is_null() {
                docs.push(v);
            }
        }
        Ok(RecipeDocs { docs })
    }

    /// Stage name of document `i` as [`Recipe::stage_name`] gives it.
    fn stage_name(&self, i: usize) -> String {
        self.docs[i]
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("final")
            .to_string()
    }

    /// Multi-document text: each document rendered, `---` between them.
    pub fn render(&self) -> Result<String> {
        let mut out = String::new();
        for d in &self.docs {
            out.push_str("---\n");
            out.push_str(
                &serde_yaml_ng::to_string(d)
                    .map_err(|e| Error::Invalid(format!("rendering the recipe: {e}")))?,
            );
        }
        Ok(out)
    }

    /// Set `seed:` and `compat:` in every document (what an exported recipe pins).
    pub fn pin(&mut self, seeds: &[(String, u64)], compat: &[(String, Compat)]) {
        for i in 0..self.docs.len() {
            let name = self.stage_name(i);
            if let Some(map) = self.docs[i].as_mapping_mut() {
                if let Some((_, s)) = seeds.iter().find(|(n, _)| *n == name) {
                    map.insert("seed".into(), Value::Number((*s).into()));
                }
                if let Some((_, c)) = compat.iter().find(|(n, _)| *n == name) {
                    map.insert("compat".into(), Value::String(c.name().into()));
                }
            }
        }
    }
}

impl Genome {
    /// Bind `genes` to the recipe text: every stage exists, every place holds a number (or
    /// the gene has a `start:`), tied places agree, and the recipe with the start values
    /// still validates.
    pub fn new(genes: &[GeneSpec], recipe_text: &str) -> Result<Genome> {
        let base = RecipeDocs::parse(recipe_text)?;
        let mut doc_of = Vec::new();
        let mut start = Vec::new();
        for g in genes {
            let err = |message: String| Error::Gene {
                gene: g.name.clone(),
                message,
            };
            let names: Vec<String> = (0..base.docs.len()).map(|i| base.stage_name(i)).collect();
            let d = names.iter().position(|n| *n == g.stage).ok_or_else(|| {
                err(format!(
                    "no stage named `{}`; stages: {}",
                    g.stage,
                    names.join(", ")
                ))
            })?;
            let mut values = Vec::new();
            let mut doc = base.docs[d].clone();
            for p in &g.at {
                let steps = parse_path(p).map_err(&err)?;
                let mut slots = Vec::new();
                visit(&mut doc, &steps, g.start.is_some(), &mut slots, "")
                    .map_err(|m| err(format!("stage `{}`: {m}", g.stage)))?;
                for s in slots {
                    match s {
                        Value::Null => values.push(None),
                        v => values.push(Some(v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
                            err(format!("stage `{}`: `{p}` is {v:?}, not a number (point at one value, e.g. a gradient's `t[2]`)", g.stage))
                        })?)),
                    }
                }
            }
            let value = match g.start {
                Some(s) => s,
                None => {
                    let first = values
                        .first()
                        .copied()
                        .flatten()
                        .ok_or_else(|| err("no value in the recipe; give `start:`".into()))?;
                    if values.iter().any(|v| *v != Some(first)) {
                        return Err(err(format!(
                            "tied places hold different values ({}); give `start:` to say where the search begins",
                            values.iter().map(|v| v.map_or("-".into(), |x| x.to_string())).collect::<Vec<_>>().join(", ")
                        )));
                    }
                    first
                }
            };
            if value < g.range.0 || value > g.range.1 {
                return Err(err(format!("the recipe's value {value} is outside the range [{}, {}]; widen the range or give `start:`", g.range.0, g.range.1)));
            }
            doc_of.push(d);
            start.push(value);
        }
        let genome = Genome {
            genes: genes.to_vec(),
            start,
            doc_of,
            base,
        };
        genome.check_param_ranges()?;
        Ok(genome)
    }

    /// A gene whose last path key names a method parameter must stay in that parameter's
    /// meaningful range (e.g. `density` in [0, 1]).
    fn check_param_ranges(&self) -> Result<()> {
        for (g, &d) in self.genes.iter().zip(&self.doc_of) {
            let method = self.base.docs[d]
                .get("merge_method")
                .and_then(Value::as_str)
                .and_then(crate::registry::lookup);
            let Some(method) = method else { continue };
            for p in &g.at {
                let last_key = parse_path(p).ok().and_then(|s| {
                    s.iter().rev().find_map(|st| match st {
                        Step::Key(k) => Some(k.clone()),
                        _ => None,
                    })
                });
                let Some(key) = last_key else { continue };
                if let Some(spec) = method
                    .params(Compat::default())
                    .into_iter()
                    .find(|s| s.name == key)
                {
                    if g.range.0 < spec.range.0 || g.range.1 > spec.range.1 {
                        return Err(Error::Gene {
                            gene: g.name.clone(),
                            message: format!(
                                "range [{}, {}] leaves `{key}`'s valid range [{}, {}] for {}",
                                g.range.0, g.range.1, spec.range.0, spec.range.1, method.name
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.genes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.genes.is_empty()
    }

    /// The documents with `values` (one per gene, in gene units) written in.
    pub fn substitute(&self, values: &[f64]) -> Result<RecipeDocs> {
        let mut docs = self.base.clone();
        for ((g, &d), &x) in self.genes.iter().zip(&self.doc_of).zip(values) {
            for p in &g.at {
                let steps = parse_path(p).map_err(|m| Error::Gene {
                    gene: g.name.clone(),
                    message: m,
                })?;
                let mut slots = Vec::new();
                visit(&mut docs.docs[d], &steps, true, &mut slots, "").map_err(|m| {
                    Error::Gene {
                        gene: g.name.clone(),
                        message: m,
                    }
                })?;
                for s in slots {
                    *s = number_value(x);
                }
            }
        }
        Ok(docs)
    }

    /// Substitute and parse: the recipe a candidate means. Warnings of the recipe parser
    /// are shown once (when the search starts), not for every candidate.
    pub fn recipe(
        &self,
        values: &[f64],
        compat: Option<Compat>,
        quiet: bool,
    ) -> Result<(String, Recipe)> {
        let text = self.substitute(values)?.render()?;
        let parse = || Recipe::parse(&text, std::path::Path::new("<candidate recipe>"), compat);
        let recipe = if quiet {
            tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), parse)?
        } else {
            parse()?
        };
        Ok((text, recipe))
    }

    /// Gene values (gene units) ↔ the optimizer's unit cube.
    pub fn to_unit(&self, values: &[f64]) -> Vec<f64> {
        self.genes
            .iter()
            .zip(values)
            .map(|(g, &x)| (x - g.range.0) / (g.range.1 - g.range.0))
            .collect()
    }
    pub fn from_unit(&self, unit: &[f64]) -> Vec<f64> {
        self.genes
            .iter()
            .zip(unit)
            .map(|(g, &u)| g.range.0 + u.clamp(0.0, 1.0) * (g.range.1 - g.range.0))
            .collect()
    }
}

/// A YAML number; integral values stay floats (`1.0`) so the recipe reads the same way.
fn number_value(x: f64) -> Value {
    Value::Number(serde_yaml_ng::Number::from(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECIPE: &str = "name: a\nmerge_method: della\nbase_model: b\nparameters: {epsilon: 0.05, lambda: 1.0}\nmodels:\n  - model: x\n    parameters: {density: 0.5, weight: 0.7}\n  - model: y\n---\nmerge_method: slerp\nbase_model: b\nslices:\n  - sources: [{model: b, layer_range: [0, 2]}, {model: a, layer_range: [0, 2]}]\n    parameters: {t: [0.0, 0.4]}\n  - sources: [{model: b, layer_range: [2, 4]}, {model: a, layer_range: [2, 4]}]\n    parameters: {t: [0.5, 0.4]}\n";

    fn gene(
        name: &str,
        stage: &str,
        at: &[&str],
        range: (f64, f64),
        start: Option<f64>,
    ) -> GeneSpec {
        GeneSpec {
            name: name.into(),
            stage: stage.into(),
            at: at.iter().map(|s| s.to_string()).collect(),
            range,
            start,
        }
    }

    #[test]
    fn paths_parse() {
        assert_eq!(
            parse_path("slices[*].parameters.t[2]").unwrap(),
            vec![
                Step::Key("slices".into()),
                Step::All,
                Step::Key("parameters".into()),
                Step::Key("t".into()),
                Step::Index(2)
            ]
        );
        assert!(parse_path("a[x]").is_err());
        assert!(parse_path("a[1").is_err());
    }

    #[test]
    fn start_values_come_from_the_recipe_and_substitution_writes_every_tied_place() {
        let genes = vec![
            gene(
                "d",
                "a",
                &["models[0].parameters.density"],
                (0.1, 1.0),
                None,
            ),
            gene(
                "t_end",
                "final",
                &["slices[*].parameters.t[1]"],
                (0.0, 1.0),
                None,
            ),
            gene(
                "w_y",
                "a",
                &["models[1].parameters.weight"],
                (0.0, 1.0),
                Some(0.3),
            ),
        ];
        let g = Genome::new(&genes, RECIPE).unwrap();
        assert_eq!(g.start, vec![0.5, 0.4, 0.3]);
        let (text, recipe) = g.recipe(&[0.25, 0.9, 0.6], None, true).unwrap();
        assert!(text.contains("density: 0.25"), "{text}");
        let fin = &recipe.stages[1];
        for s in &fin.slices {
            let t = &s.parameters["t"];
            assert_eq!(t.eval("x", 1.0), Some(0.9));
        }
        assert_eq!(fin.slices[1].parameters["t"].eval("x", 0.0), Some(0.5));
        let y = &recipe.stages[0].slices[0].sources[1];
        assert_eq!(y.parameters["weight"].eval("x", 0.0), Some(0.6));
    }

    #[test]
    fn bad_genes_are_explained() {
        let e = |g: GeneSpec| Genome::new(&[g], RECIPE).unwrap_err().to_string();
        let m = e(gene("x", "nope", &["parameters.epsilon"], (0.0, 0.1), None));
        assert!(
            m.contains("no stage named `nope`") && m.contains("final"),
            "{m}"
        );
        let m = e(gene(
            "x",
            "a",
            &["models[5].parameters.density"],
            (0.0, 1.0),
            None,
        ));
        assert!(m.contains("no [5]"), "{m}");
        let m = e(gene(
            "x",
            "final",
            &["slices[*].parameters.t[0]"],
            (0.0, 1.0),
            None,
        ));
        assert!(m.contains("tied places hold different values"), "{m}");
        let m = e(gene(
            "x",
            "final",
            &["slices[0].parameters.t"],
            (0.0, 1.0),
            None,
        ));
        assert!(m.contains("not a number"), "{m}");
        let m = e(gene(
            "x",
            "a",
            &["models[0].parameters.density"],
            (0.0, 2.0),
            None,
        ));
        assert!(m.contains("valid range"), "{m}");
        let m = e(gene(
            "x",
            "a",
            &["models[1].parameters.density"],
            (0.0, 1.0),
            None,
        ));
        assert!(m.contains("`start:`"), "{m}");
    }
}
